"""The ``postgres`` backend: chat histories in a PostgreSQL table, sync and native async.

Importing this module does not import psycopg; building a backend does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from chathistory import (
    BaseBackend,
    CollectionMissingError,
    aretry_transient,
    encode_record,
    retry_transient,
)
from chathistory.capabilities import SessionInfo, check_page_limit, check_record_texts
from chathistory_postgres.config import PostgresConfig

if TYPE_CHECKING:
    from chathistory_postgres.client import AsyncConnection, Client, Connection
    from chathistory_postgres.sql import Job, Statements

__all__ = ["PostgresBackend"]

T = TypeVar("T")
Policy = tuple[Callable[[BaseException], bool], Callable[[BaseException], BaseException]]
Query = tuple[str, tuple[Any, ...]]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _cutoff(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"cutoff must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("cutoff must be timezone-aware (for example datetime.now(UTC))")
    return moment


def _run_job(connection: Connection, job: Job) -> None:
    try:
        query, params = next(job)
        while True:
            cursor = connection.execute(query, params, prepare=False)
            query, params = job.send(cursor.fetchall() if cursor.description is not None else [])
    except StopIteration:
        return


async def _arun_job(connection: AsyncConnection, job: Job) -> None:
    try:
        query, params = next(job)
        while True:
            cursor = await connection.execute(query, params, prepare=False)
            rows = await cursor.fetchall() if cursor.description is not None else []
            query, params = job.send(rows)
    except StopIteration:
        return


class PostgresBackend(BaseBackend):
    """Stores each message as a jsonb row; reads the newest N through an index on (session, id).

    Args:
        config: A :class:`PostgresConfig`; :meth:`from_options` builds one from keywords.

    Raises:
        chathistory.ConfigError: a bad option, or an application object of the wrong type.

    Connections are opened on first use, not here. Errors of later calls:
    :class:`~chathistory.BackendUnavailableError` when the server cannot be
    reached (after retrying what is safe to repeat),
    :class:`~chathistory.PermissionDeniedError` when it refuses the login or a
    privilege, :class:`~chathistory.RecordError` for a message jsonb cannot hold.

    Attributes:
        client: Lends the connections (:class:`~chathistory_postgres.client.Client`).
        statements: The SQL this backend runs (:class:`~chathistory_postgres.sql.Statements`).

    Example::

        backend = PostgresBackend.from_options(conninfo="postgresql://app@db:5432/chat")
        history = ChatHistory("user-42", backend=backend)
        # or, by name, through the entry point:
        history = ChatHistory("user-42", backend="postgres", conninfo="postgresql://...")
    """

    name = "postgres"
    Config = PostgresConfig
    config: PostgresConfig

    def __init__(self, config: PostgresConfig) -> None:
        super().__init__(config)
        from psycopg.types.numeric import Int8

        from chathistory_postgres.client import Client
        from chathistory_postgres.errors import is_transient, translate
        from chathistory_postgres.sql import (
            Statements,
            jsonb_batch,
            jsonb_texts,
            records_from_rows,
            session_texts_from_rows,
            sessions_from_rows,
        )

        self.client: Client = Client(config)
        self.statements: Statements = Statements.build(config.db_schema, config.table,
                                                       config.layout)
        self._int8 = Int8
        self._jsonb_batch = jsonb_batch
        self._jsonb_texts = jsonb_texts
        self._records = records_from_rows
        self._sessions = sessions_from_rows
        self._session_texts = session_texts_from_rows
        self._prepare = config.prepared_statements
        # Only an append may not run twice: a prune run again deletes nothing more.
        self._policies: dict[str, Policy] = {
            action: (partial(is_transient, write=action == "append"),
                     partial(translate, action=action, server=self.client.server))
            for action in ("create the table", "append", "read", "clear", "delete sessions")
        }

    def __repr__(self) -> str:
        return (f"PostgresBackend(server={self.client.server!r}, "
                f"schema={self.config.db_schema!r}, table={self.config.table!r}, "
                f"layout={self.config.layout!r})")

    # -- what every call binds ------------------------------------------------------------

    def _session(self, session_id: str) -> str:
        """The session id as bound: checked, and for the langchain layout, a canonical UUID."""
        if not isinstance(session_id, str):
            raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
        if self.config.layout == "langchain_postgres":
            try:
                return str(uuid.UUID(session_id))
            except ValueError:
                shown = session_id if len(session_id) <= 80 else session_id[:77] + "..."
                raise ValueError(
                    "backend 'postgres' with layout='langchain_postgres' stores session ids "
                    f"in a UUID column, so session ids must be UUID strings; got {shown!r}"
                ) from None
        if "\x00" in session_id:
            raise ValueError("session_id must not contain NUL characters")
        try:
            session_id.encode()
        except UnicodeEncodeError:
            raise ValueError("session_id is not valid Unicode (it has a lone surrogate)") from None
        return session_id

    def _insert(self, session_id: str, records: Sequence[Mapping[str, Any]]
                ) -> tuple[str, str, str] | None:
        # Every record is encoded before any I/O: a bad one leaves nothing written.
        texts = [encode_record(record) for record in records]
        session = self._session(session_id)
        if not texts:
            return None
        batch = self._jsonb_batch(texts, self.config.layout)
        return (session, session, batch)

    def _select(self, session_id: str, limit: int | None) -> tuple[str, tuple[Any, ...]] | None:
        session = self._session(session_id)
        if limit is None:
            return self.statements.select_all, (session,)
        if limit == 0:
            return None
        return self.statements.select_newest, (session, session, self._int8(limit))

    def _page(self, after: str | None, limit: int, scan: bool = False) -> Query:
        page = self._int8(check_page_limit(limit))
        first, rest = ((self.statements.scan_first, self.statements.scan_after) if scan
                       else (self.statements.list_first, self.statements.list_after))
        if after is None:
            return first, (page,)
        return rest, (self._session(after), page)

    def _no_sessions_table(self, error: CollectionMissingError) -> bool:
        """Whether only ``<table>_sessions`` is missing (the message table may be there)."""
        return f'{self.config.table}_sessions"' in str(error)

    def _prune(self, cutoff: datetime, dry_run: bool) -> Query:
        statement = self.statements.count_before if dry_run else self.statements.delete_before
        return statement, (_cutoff(cutoff),)

    def _many(self, session_ids: Sequence[str]) -> dict[str, str]:
        """Each bound session id, mapped to the one the caller gave."""
        if isinstance(session_ids, str):
            raise TypeError("session_ids must be a sequence of session ids, not one str")
        return {self._session(session_id): session_id for session_id in session_ids}

    def _insert_many(self, batches: Mapping[str, Sequence[str]]
                     ) -> tuple[list[str], list[tuple[str, str]]] | None:
        """The sessions to lock and the (session, jsonb text) rows to COPY, in batch order."""
        sessions: list[str] = []
        rows: list[tuple[str, str]] = []
        for session_id, texts in batches.items():
            session = self._session(session_id)
            if texts:
                sessions.append(session)
                rows.extend([(session, text) for text in
                             self._jsonb_texts(list(texts), self.config.layout)])
        return (sessions, rows) if sessions else None

    @staticmethod
    def _encoded(batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
        # Every record of every session is encoded before any I/O: all or nothing.
        return {session_id: [encode_record(record) for record in records]
                for session_id, records in batches.items()}

    @staticmethod
    def _infos(rows: list[tuple[Any, ...]]) -> list[SessionInfo]:
        return [SessionInfo(session_id, int(messages), _utc(written))
                for session_id, messages, written in rows]

    # -- sync -----------------------------------------------------------------------------

    def _rows(self, action: str, query: Query) -> list[tuple[Any, ...]]:
        (statement, params), prepare = query, self._prepare

        def work(connection: Connection) -> list[tuple[Any, ...]]:
            cursor = connection.execute(statement, params, prepare=prepare)
            return cursor.fetchall() if cursor.description is not None else []

        return self._call(action, work)

    def _call(self, action: str, work: Callable[[Connection], T], transaction: bool = False
              ) -> T:
        is_transient, translate = self._policies[action]
        return retry_transient(lambda: self.client.run(work, transaction=transaction),
                               backend=self.name, is_transient=is_transient, translate=translate)

    def create_collection(self) -> None:
        """Create the schema, table, index and version record if missing; check the layout."""
        self._call("create the table",
                   lambda connection: _run_job(connection, self.statements.create()),
                   transaction=True)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``records`` after the session's others: one statement, all or nothing."""
        params = self._insert(session_id, records)
        if params is not None:
            query, prepare = self.statements.insert, self._prepare
            self._call("append", lambda c: c.execute(query, params, prepare=prepare))

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``."""
        select = self._select(session_id, limit)
        if select is None:
            return []
        (query, params), prepare = select, self._prepare
        return self._records(self._call(
            "read", lambda c: c.execute(query, params, prepare=prepare).fetchall()))

    def clear(self, session_id: str) -> None:
        """Delete this session's rows."""
        params, query, prepare = (self._session(session_id),), self.statements.delete, \
            self._prepare
        self._call("clear", lambda c: c.execute(query, params, prepare=prepare))

    # -- optional capabilities: listing, write times, pruning, bulk reads and writes --------

    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> list[SessionInfo]:
        """Up to ``limit`` sessions after ``after``, in id order, from ``<table>_sessions``.

        One index range read of the sessions table: its cost does not depend on
        how many messages the sessions hold.
        """
        try:
            return self._infos(self._rows("read", self._page(after, limit)))
        except CollectionMissingError as error:
            if not self._no_sessions_table(error):
                raise
            return self._infos(self._rows("read", self._page(after, limit, scan=True)))

    def last_write(self, session_id: str) -> datetime | None:
        """When ``session_id`` last had rows inserted (UTC), or None if it has none."""
        session = (self._session(session_id),)
        try:
            rows = self._rows("read", (self.statements.last_write, session))
        except CollectionMissingError as error:
            if not self._no_sessions_table(error):
                raise
            rows = self._rows("read", (self.statements.scan_last_write, session))
        return _utc(rows[0][0]) if rows and rows[0][0] is not None else None

    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Delete every session last written before ``cutoff`` (aware); return how many.

        One statement: the old sessions through the ``last_write`` index, their
        rows through the ``(session_id, id)`` index.
        """
        return int(self._rows("delete sessions", self._prune(cutoff, dry_run))[0][0])

    def fetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every record of each session that has any, oldest first: one statement."""
        given = self._many(session_ids)
        if not given:
            return {}
        rows = self._rows("read", (self.statements.select_many, (list(given),)))
        return self._sessions([(row[0], row[1]) for row in rows], given)

    def fetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`fetch_many`, each record as its JSON text (as jsonb prints it)."""
        given = self._many(session_ids)
        if not given:
            return {}
        rows = self._rows("read", (self.statements.select_many, (list(given),)))
        return self._session_texts([(row[0], row[1]) for row in rows], given)

    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Append each session's records after its others: one transaction, all or nothing.

        The transaction takes the sessions' locks (those :meth:`append` takes), in
        session order, then writes every row in batch order with one ``COPY``.
        """
        self._copy_in(self._encoded(batches))

    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        """:meth:`append_many` of records given as JSON text; jsonb parses each one."""
        check_record_texts(batches)
        self._copy_in(batches)

    def _copy_in(self, batches: Mapping[str, Sequence[str]]) -> None:
        insert = self._insert_many(batches)
        if insert is None:
            return
        (sessions, rows), prepare = insert, self._prepare
        lock, copy_rows = self.statements.lock_sessions, self.statements.copy_rows

        def work(connection: Connection) -> None:
            connection.execute(lock, (sessions,), prepare=prepare)
            with connection.cursor() as cursor, cursor.copy(copy_rows) as copy:
                for row in rows:
                    copy.write_row(row)

        self._call("append", work, transaction=True)

    def close(self) -> None:
        """Close the backend's own sync pool (and an async pool whose event loop has ended).

        Connections and pools the application gave stay open; a later call opens
        a new pool. The async pool of a loop that is still open is closed by
        :meth:`aclose` in that loop.
        """
        self.client.close()

    # -- async ----------------------------------------------------------------------------

    async def _acall(self, action: str, work: Callable[[AsyncConnection], Awaitable[T]],
                     transaction: bool = False) -> T:
        is_transient, translate = self._policies[action]
        return await aretry_transient(lambda: self.client.arun(work, transaction=transaction),
                                      backend=self.name, is_transient=is_transient,
                                      translate=translate)

    async def _arows(self, action: str, query: Query) -> list[tuple[Any, ...]]:
        if not self.client.has_async:
            return await asyncio.to_thread(self._rows, action, query)
        (statement, params), prepare = query, self._prepare

        async def work(connection: AsyncConnection) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(statement, params, prepare=prepare)
            return await cursor.fetchall() if cursor.description is not None else []

        return await self._acall(action, work)

    async def acreate_collection(self) -> None:
        if not self.client.has_async:
            return await super().acreate_collection()

        async def work(connection: AsyncConnection) -> None:
            await _arun_job(connection, self.statements.create())

        await self._acall("create the table", work, transaction=True)

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not self.client.has_async:
            return await super().aappend(session_id, records)
        params = self._insert(session_id, records)
        if params is None:
            return
        query, prepare = self.statements.insert, self._prepare

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(query, params, prepare=prepare)

        await self._acall("append", work)

    async def afetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        if not self.client.has_async:
            return await super().afetch(session_id, limit=limit)
        select = self._select(session_id, limit)
        if select is None:
            return []
        (query, params), prepare = select, self._prepare

        async def work(connection: AsyncConnection) -> list[tuple[str]]:
            return await (await connection.execute(query, params, prepare=prepare)).fetchall()

        return self._records(await self._acall("read", work))

    async def aclear(self, session_id: str) -> None:
        if not self.client.has_async:
            return await super().aclear(session_id)
        params, query, prepare = (self._session(session_id),), self.statements.delete, \
            self._prepare

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(query, params, prepare=prepare)

        await self._acall("clear", work)

    async def alist_sessions(self, *, after: str | None = None, limit: int = 100
                             ) -> list[SessionInfo]:
        try:
            return self._infos(await self._arows("read", self._page(after, limit)))
        except CollectionMissingError as error:
            if not self._no_sessions_table(error):
                raise
            return self._infos(await self._arows("read", self._page(after, limit, scan=True)))

    async def alast_write(self, session_id: str) -> datetime | None:
        session = (self._session(session_id),)
        try:
            rows = await self._arows("read", (self.statements.last_write, session))
        except CollectionMissingError as error:
            if not self._no_sessions_table(error):
                raise
            rows = await self._arows("read", (self.statements.scan_last_write, session))
        return _utc(rows[0][0]) if rows and rows[0][0] is not None else None

    async def adelete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        return int((await self._arows("delete sessions", self._prune(cutoff, dry_run)))[0][0])

    async def afetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        given = self._many(session_ids)
        if not given:
            return {}
        rows = await self._arows("read", (self.statements.select_many, (list(given),)))
        return self._sessions([(row[0], row[1]) for row in rows], given)

    async def afetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        given = self._many(session_ids)
        if not given:
            return {}
        rows = await self._arows("read", (self.statements.select_many, (list(given),)))
        return self._session_texts([(row[0], row[1]) for row in rows], given)

    async def aappend_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        await self._acopy_in(self._encoded(batches))

    async def aappend_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        check_record_texts(batches)
        await self._acopy_in(batches)

    async def _acopy_in(self, batches: Mapping[str, Sequence[str]]) -> None:
        if not self.client.has_async:
            return await asyncio.to_thread(self._copy_in, batches)
        insert = self._insert_many(batches)
        if insert is None:
            return
        (sessions, rows), prepare = insert, self._prepare
        lock, copy_rows = self.statements.lock_sessions, self.statements.copy_rows

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(lock, (sessions,), prepare=prepare)
            async with connection.cursor() as cursor, cursor.copy(copy_rows) as copy:
                for row in rows:
                    await copy.write_row(row)

        await self._acall("append", work, transaction=True)

    async def aclose(self) -> None:
        """Close the backend's own pools: the async one in this loop, the sync one in a thread.

        Raises:
            chathistory.ChatHistoryError: the async pool belongs to another event loop
                that has not ended.
        """
        await self.client.aclose()
