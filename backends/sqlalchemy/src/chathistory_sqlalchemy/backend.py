"""The ``sqlalchemy`` backend: chat histories in a SQL table through SQLAlchemy Core.

Importing this module does not import SQLAlchemy; building a backend does.
"""

from __future__ import annotations

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
from chathistory_sqlalchemy.config import SQLAlchemyConfig

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

    from chathistory_sqlalchemy.client import Client
    from chathistory_sqlalchemy.sql import Statements

__all__ = ["SQLAlchemyBackend"]

T = TypeVar("T")
Policy = tuple[Callable[[BaseException], bool], Callable[[BaseException], BaseException]]


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
        from chathistory_sqlalchemy.errors import is_transient, translate
        from chathistory_sqlalchemy.sql import Statements

        self.client: Client = Client(config)
        self.statements: Statements = Statements.build(config.table_name, config.layout,
                                                       self.client.dialect.name)
        self._policies: dict[str, Policy] = {
            action: (partial(is_transient, write=action == "append",
                             create=action == "create the table"),
                     partial(translate, action=action, server=self.client.server))
            for action in ("create the table", "append", "read", "clear")
        }

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
        """Create the table and its index if missing; check an existing table's columns."""
        self._call("create the table", self._create, transaction=True)

    def _create(self, connection: Connection) -> None:
        from sqlalchemy import inspect

        statements = self.statements
        statements.table.create(connection, checkfirst=True)
        statements.index.create(connection, checkfirst=True)
        self._check_columns({column["name"] for column in
                             inspect(connection).get_columns(statements.table.name)})

    def _check_columns(self, found: set[str]) -> None:
        from chathistory import ConfigError

        missing = self.statements.columns - found
        if missing:
            raise ConfigError(
                f"backend 'sqlalchemy': table {self.config.table_name!r} exists but is not a "
                f"{self.config.layout!r} table (it lacks {', '.join(sorted(missing))}); "
                "choose another table, or the layout that matches it")

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

    async def acreate_collection(self) -> None:
        if not self.client.has_async:
            return await super().acreate_collection()

        async def work(connection: AsyncConnection) -> None:
            await connection.run_sync(self._create)

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

    async def aclose(self) -> None:
        """Dispose of this loop's own async engine, and of the own sync engine in a thread."""
        await self.client.aclose()
