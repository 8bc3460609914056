"""The ``sqlalchemy`` backend: chat histories in a SQL table through SQLAlchemy Core.

Importing this module does not import SQLAlchemy; building a backend does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from chathistory import (
    BaseBackend,
    aretry_transient,
    decode_record,
    encode_record,
    retry_transient,
)
from chathistory.capabilities import SessionInfo, check_page_limit, check_record_texts
from chathistory_sqlalchemy.config import SQLAlchemyConfig

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

    from chathistory_sqlalchemy.client import Client
    from chathistory_sqlalchemy.sql import Job, Statements

__all__ = ["SQLAlchemyBackend"]

T = TypeVar("T")
Policy = tuple[Callable[[BaseException], bool], Callable[[BaseException], BaseException]]


def _run_job(connection: Connection, job: Job[T]) -> T:
    """Run ``job``'s statements on ``connection``, sending each one's rows back."""
    try:
        statement, params = next(job)
        while True:
            result = connection.execute(statement, params)
            statement, params = job.send(result.all() if result.returns_rows else [])
    except StopIteration as done:
        value: T = done.value
        return value


async def _arun_job(connection: AsyncConnection, job: Job[T]) -> T:
    try:
        statement, params = next(job)
        while True:
            result = await connection.execute(statement, params)
            statement, params = job.send(result.all() if result.returns_rows else [])
    except StopIteration as done:
        value: T = done.value
        return value


class SQLAlchemyBackend(BaseBackend):
    """Stores each message as a row; reads the newest N through an index on (session, id).

    Args:
        config: A :class:`SQLAlchemyConfig`; :meth:`from_options` builds one from keywords.

    Raises:
        chathistory.ConfigError: a bad option or URL, a missing driver, or an
            application object of the wrong type.

    Connections are opened on first use, not here. Errors of later calls:
    :class:`~chathistory.BackendUnavailableError` when the database cannot be
    reached (after retrying what is safe to repeat),
    :class:`~chathistory.PermissionDeniedError` when it refuses the login or a
    privilege, :class:`~chathistory.RecordError` for a batch the table cannot hold,
    :class:`~chathistory.CollectionMissingError` for a read (or write) of a table,
    or SQLite file, that does not exist (nothing is created but by
    :meth:`create_collection`).

    Besides the four methods it lists sessions in id order, and reads and writes
    many sessions at once, records or their JSON text (the capabilities
    ``ListsSessions``, ``FetchesInBulk``, ``CopiesInBulk`` and ``CopiesRecordText``
    of :mod:`chathistory.capabilities`). It keeps no write times.

    Attributes:
        client: Builds and lends the engines (:class:`~chathistory_sqlalchemy.client.Client`).
        statements: The table and the SQL this backend runs
            (:class:`~chathistory_sqlalchemy.sql.Statements`).

    Example::

        backend = SQLAlchemyBackend.from_options(url="mysql+pymysql://app:secret@db/chat")
        history = ChatHistory("user-42", backend=backend)
        # or, by name, through the entry point:
        history = ChatHistory("user-42", backend="sqlalchemy", url="sqlite:///chat.db")
    """

    name = "sqlalchemy"
    Config = SQLAlchemyConfig
    config: SQLAlchemyConfig

    def __init__(self, config: SQLAlchemyConfig) -> None:
        super().__init__(config)
        from chathistory_sqlalchemy.client import Client
        from chathistory_sqlalchemy.errors import ListingIndexMissing, is_transient, translate
        from chathistory_sqlalchemy.sql import Statements

        self.client: Client = Client(config)
        self.statements: Statements = Statements.build(config.table_name, config.layout,
                                                       self.client.dialect)
        self._policies: dict[str, Policy] = {
            action: (partial(is_transient, write=action == "append",
                             create=action == "create the table"),
                     partial(translate, action=action, server=self.client.server))
            for action in ("create the table", "append", "read", "clear", "list sessions")
        }
        # Held here: the errors module imports SQLAlchemy, which this module does not.
        self._index_missing: type[Exception] = ListingIndexMissing

    def __repr__(self) -> str:
        return (f"SQLAlchemyBackend(server={self.client.server!r}, "
                f"table={self.config.table_name!r}, layout={self.config.layout!r})")

    # -- what every call binds ------------------------------------------------------------

    @staticmethod
    def _checked(session_id: str) -> str:
        if not isinstance(session_id, str):
            raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
        try:
            session_id.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("session_id is not valid Unicode (it has a lone surrogate)") from None
        return session_id

    def _rows(self, session_id: str, records: Sequence[Mapping[str, Any]]
              ) -> list[dict[str, Any]]:
        # Every record is encoded before any I/O: a bad one leaves nothing written.
        messages = [encode_record(record) for record in records]
        return self.statements.rows(self._checked(session_id), messages)

    def _many(self, session_ids: Sequence[str]) -> list[str]:
        if isinstance(session_ids, str):
            raise TypeError("session_ids must be a sequence of session ids, not one str")
        return [self._checked(session_id) for session_id in session_ids]

    def _batches(self, batches: Mapping[str, Sequence[str]]) -> list[list[dict[str, Any]]]:
        """The rows of each session with records, in batch order: every id checked first."""
        return [self.statements.rows(self._checked(session_id), list(texts))
                for session_id, texts in batches.items() if texts]

    @staticmethod
    def _encoded(batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
        # Every record of every session is encoded before any I/O: all or nothing.
        if not isinstance(batches, Mapping):
            raise TypeError("batches must map each session id to its records")
        return {session_id: [encode_record(record) for record in records]
                for session_id, records in batches.items()}

    def _page(self, after: str | None, limit: int) -> tuple[str | None, int]:
        return (None if after is None else self._checked(after)), check_page_limit(limit)

    @staticmethod
    def _decoded(texts: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
        return {session_id: [decode_record(text) for text in session_texts]
                for session_id, session_texts in texts.items()}

    def _select(self, session_id: str, limit: int | None) -> tuple[Any, dict[str, Any]] | None:
        params = self.statements.session(self._checked(session_id))
        if limit is None:
            return self.statements.select_all, params
        if limit < 0:
            raise ValueError(f"limit must be None or at least 0, not {limit}")
        if limit == 0:
            return None
        return self.statements.select_newest, {**params, "limit": limit}

    # -- sync -----------------------------------------------------------------------------

    def _call(self, action: str, work: Callable[[Connection], T], *, transaction: bool) -> T:
        is_transient, translate = self._policies[action]
        create = action == "create the table"
        return retry_transient(
            lambda: self.client.run(work, transaction=transaction, create=create),
            backend=self.name, is_transient=is_transient, translate=translate)

    def create_collection(self) -> None:
        """Create or upgrade the table: the steps of ``sql.MIGRATIONS`` it has not had.

        An existing table of the other layout is refused; one a peer or an older
        version made is upgraded in place (it gets the listing index: on
        MySQL/MariaDB the virtual column ``session_key`` and its index).
        """
        from chathistory_sqlalchemy.sql import migrate

        self._call("create the table", lambda c: migrate(c, self.statements), transaction=True)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``records`` after the session's others: one statement, all or nothing."""
        rows = self._rows(session_id, records)
        if not rows:
            return
        statement, params = self.statements.insert_batch(self.client.dialect, rows)
        self._call("append", lambda c: c.execute(statement, params), transaction=True)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``."""
        select = self._select(session_id, limit)
        if select is None:
            return []
        statement, params = select
        messages = self._call("read", lambda c: c.execute(statement, params).scalars().all(),
                              transaction=False)
        return [decode_record(message) for message in messages]

    def clear(self, session_id: str) -> None:
        """Delete this session's rows."""
        params = self.statements.session(self._checked(session_id))
        statement = self.statements.delete
        self._call("clear", lambda c: c.execute(statement, params), transaction=True)

    # -- optional capabilities: listing, bulk reads and writes ----------------------------

    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> list[SessionInfo]:
        """Up to ``limit`` sessions after ``after``, in id order (as Python sorts ``str``).

        Through the listing index, one probe per session, whatever the sessions
        hold; from the table itself where create_collection has not added that
        index yet. ``messages`` and ``last_write`` are None: counting would read
        every row, and the layouts keep no write times.
        """
        after, limit = self._page(after, limit)
        listing = self.statements.listing
        if listing.page is not None:
            try:
                return _infos(self._call(
                    "list sessions", lambda c: _run_job(c, listing.pages(after, limit)),
                    transaction=False))
            except self._index_missing:
                pass
        return _infos(self._call(
            "read", lambda c: _run_job(c, listing.pages(after, limit, scan=True)),
            transaction=False))

    def fetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every record of each session that has any, oldest first: :meth:`fetch_many_text`."""
        return self._decoded(self.fetch_many_text(session_ids))

    def fetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`fetch_many`, each record as the JSON text stored.

        One statement per 500 sessions, on one connection, through the session index.
        """
        wanted = self._many(session_ids)
        if not wanted:
            return {}
        return self._call("read", lambda c: _run_job(c, self.statements.fetch_many(wanted)),
                          transaction=False)

    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Append each session's records after its others: one transaction, all or nothing."""
        self.append_many_text(self._encoded(batches))

    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        """:meth:`append_many` of records given as JSON text (stored as given).

        One transaction: on MySQL/MariaDB a multi-row INSERT per about 1 MB of
        records (a session's rows always in one), elsewhere one executemany.
        """
        check_record_texts(batches)
        rows, dialect = self._batches(batches), self.client.dialect
        if rows:
            self._call("append", lambda c: _run_job(c, self.statements.insert_many(dialect, rows)),
                       transaction=True)

    def close(self) -> None:
        """Dispose of the backend's own engine's pool (a later call reconnects).

        An engine the application gave is left alone. The async engine of an event
        loop that is still running is disposed of by :meth:`aclose` in that loop.
        """
        self.client.close()

    # -- async ----------------------------------------------------------------------------

    async def _acall(self, action: str, work: Callable[[AsyncConnection], Awaitable[T]], *,
                     transaction: bool) -> T:
        is_transient, translate = self._policies[action]
        create = action == "create the table"
        return await aretry_transient(
            lambda: self.client.arun(work, transaction=transaction, create=create),
            backend=self.name, is_transient=is_transient, translate=translate)

    async def _ajob(self, action: str, job: Callable[[], Job[T]], *, transaction: bool) -> T:
        """Run a fresh ``job()`` (each attempt its own) on this loop's async engine."""
        async def work(connection: AsyncConnection) -> T:
            return await _arun_job(connection, job())

        return await self._acall(action, work, transaction=transaction)

    async def acreate_collection(self) -> None:
        if not self.client.has_async:
            return await super().acreate_collection()

        async def work(connection: AsyncConnection) -> None:
            from chathistory_sqlalchemy.sql import migrate

            await connection.run_sync(migrate, self.statements)

        await self._acall("create the table", work, transaction=True)

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not self.client.has_async:
            return await super().aappend(session_id, records)
        rows = self._rows(session_id, records)
        if not rows:
            return
        statement, params = self.statements.insert_batch(self.client.dialect, rows)

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(statement, params)

        await self._acall("append", work, transaction=True)

    async def afetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        if not self.client.has_async:
            return await super().afetch(session_id, limit=limit)
        select = self._select(session_id, limit)
        if select is None:
            return []
        statement, params = select

        async def work(connection: AsyncConnection) -> Sequence[str]:
            return (await connection.execute(statement, params)).scalars().all()

        return [decode_record(message) for message in
                await self._acall("read", work, transaction=False)]

    async def aclear(self, session_id: str) -> None:
        if not self.client.has_async:
            return await super().aclear(session_id)
        params = self.statements.session(self._checked(session_id))
        statement = self.statements.delete

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(statement, params)

        await self._acall("clear", work, transaction=True)

    async def alist_sessions(self, *, after: str | None = None, limit: int = 100
                             ) -> list[SessionInfo]:
        if not self.client.has_async:
            return await asyncio.to_thread(self.list_sessions, after=after, limit=limit)
        after, limit = self._page(after, limit)
        listing = self.statements.listing
        if listing.page is not None:
            try:
                return _infos(await self._ajob(
                    "list sessions", lambda: listing.pages(after, limit), transaction=False))
            except self._index_missing:
                pass
        return _infos(await self._ajob(
            "read", lambda: listing.pages(after, limit, scan=True), transaction=False))

    async def afetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return self._decoded(await self.afetch_many_text(session_ids))

    async def afetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        if not self.client.has_async:
            return await asyncio.to_thread(self.fetch_many_text, session_ids)
        wanted = self._many(session_ids)
        if not wanted:
            return {}
        return await self._ajob("read", lambda: self.statements.fetch_many(wanted),
                                transaction=False)

    async def aappend_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        await self.aappend_many_text(self._encoded(batches))

    async def aappend_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        if not self.client.has_async:
            return await asyncio.to_thread(self.append_many_text, batches)
        check_record_texts(batches)
        rows, dialect = self._batches(batches), self.client.dialect
        if rows:
            await self._ajob("append", lambda: self.statements.insert_many(dialect, rows),
                             transaction=True)

    async def aclose(self) -> None:
        """Dispose of this loop's own async engine, and of the own sync engine in a thread."""
        await self.client.aclose()


def _infos(session_ids: list[str]) -> list[SessionInfo]:
    return [SessionInfo(session_id) for session_id in session_ids]
