"""The psycopg side of the backend: statements, connections, retries and errors.

Imported when a :class:`~chathistory_postgres.PostgresBackend` is built, never
when the plugin is loaded or its options are validated.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import Int8
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chathistory import (
    ChatHistoryError,
    ConfigError,
    RecordError,
    aretry_transient,
    decode_record,
    encode_record,
    retry_transient,
)
from chathistory_postgres._errors import BACKEND, ConnectionLostError, Server, is_retryable
from chathistory_postgres._pools import (
    AsyncConnection,
    AsyncConnections,
    ConnectionSettings,
    SyncConnection,
    SyncConnections,
)
from chathistory_postgres._sql import SCHEMA_VERSION, Statements
from chathistory_postgres.config import PostgresConfig

__all__ = ["Store"]

T = TypeVar("T")

Step = tuple[str, Sequence[Any]]
"""One statement of a multi-statement job, with its parameters."""
Job = Generator[Step, list[tuple[Any, ...]], None]
"""Yields statements, receives each one's rows: run the same way by sync and async code."""

_COMPATIBLE_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "chathistory": {"session_id": ("text", "character varying"), "message": ("jsonb",)},
    "langchain_postgres": {"session_id": ("uuid",), "message": ("jsonb",)},
}


def _parse_conninfo(conninfo: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(conninfo)
    except psycopg.Error:
        # psycopg's message quotes the string, password included.
        raise ConfigError(
            f"backend {BACKEND!r}: option 'conninfo' is not a valid libpq URL "
            "(postgresql://user:password@host:port/dbname) or key=value string"
        ) from None


def _check_type(name: str, value: object, expected: type[Any], hint: str) -> None:
    if value is not None and not isinstance(value, expected):
        raise ConfigError(
            f"backend {BACKEND!r}: option {name!r} must be {hint}, not {type(value).__name__}"
        )


def _pool_server(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> Server:
    if isinstance(pool.conninfo, str):
        try:
            params = conninfo_to_dict(pool.conninfo)
        except psycopg.Error:
            params = {}
        return Server.from_params(params, [pool.conninfo, str(params.get("password") or "")])
    return Server("(application pool)", "?", "?")


# A JSON string, or a number in exponent form with a positive exponent.
_STRING_OR_BIG_EXPONENT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?\d+(?:\.\d+)?e\+\d+)')


def positional_floats(batch: str) -> str:
    """Write floats like ``1e+300`` as ``1000...0.0``, so jsonb gives back a float.

    jsonb keeps numbers as ``numeric``, which prints ``1e+300`` without its
    exponent and without a fraction: it would come back as the int 10**300.
    Written positionally with ``.0``, it comes back as the float it was.
    Python's JSON uses exponents with a positive sign only from 1e16 up, so
    this runs only for such numbers (or a string containing "e+").
    """
    def positional(match: re.Match[str]) -> str:
        number = match.group(1)
        if number is None:
            return match.group(0)
        return format(Decimal(number), "f") + ".0"

    return _STRING_OR_BIG_EXPONENT.sub(positional, batch)


def _unencodable(error: UnicodeEncodeError) -> RecordError:
    return RecordError(f"message cannot be stored: it is not valid Unicode ({error.reason})")


def _run_job(connection: SyncConnection, job: Job, prepare: bool | None) -> None:
    try:
        query, params = next(job)
        while True:
            cursor = connection.execute(query, params, prepare=prepare)
            rows = cursor.fetchall() if cursor.description is not None else []
            query, params = job.send(rows)
    except StopIteration:
        return


async def _arun_job(connection: AsyncConnection, job: Job, prepare: bool | None) -> None:
    try:
        query, params = next(job)
        while True:
            cursor = await connection.execute(query, params, prepare=prepare)
            rows = await cursor.fetchall() if cursor.description is not None else []
            query, params = job.send(rows)
    except StopIteration:
        return


class Store:
    """Runs the backend's four operations, sync and async, for one configuration."""

    def __init__(self, config: PostgresConfig) -> None:
        _check_type("connection", config.connection, psycopg.Connection,
                    "an open psycopg.Connection (psycopg 3)")
        _check_type("async_connection", config.async_connection, psycopg.AsyncConnection,
                    "an open psycopg.AsyncConnection (psycopg 3)")
        _check_type("pool", config.pool, ConnectionPool, "a psycopg_pool.ConnectionPool")
        _check_type("async_pool", config.async_pool, AsyncConnectionPool,
                    "a psycopg_pool.AsyncConnectionPool")
        settings: ConnectionSettings | None = None
        if config.conninfo is not None:
            conninfo = config.conninfo.get_secret_value()
            params = _parse_conninfo(conninfo)
            server = Server.from_params(params, [conninfo, str(params.get("password") or "")])
            settings = ConnectionSettings(config, server, conninfo, params)
        sync_server = (
            Server.from_connection(config.connection) if config.connection is not None
            else _pool_server(config.pool) if config.pool is not None
            else settings.server if settings is not None
            else Server("(no sync connection)", "?", "?")
        )
        async_server = (
            Server.from_connection(config.async_connection)
            if config.async_connection is not None
            else _pool_server(config.async_pool) if config.async_pool is not None
            else settings.server if settings is not None
            else sync_server
        )
        self.config = config
        self.server = settings.server if settings is not None else sync_server
        self.sql = Statements.build(config.db_schema, config.table, config.layout)
        self.sync = SyncConnections(
            None if config.connection is not None or config.pool is not None else settings,
            server=sync_server, connection=config.connection, pool=config.pool)
        self.async_ = AsyncConnections(
            None if config.async_connection is not None or config.async_pool is not None
            else settings,
            server=async_server, connection=config.async_connection, pool=config.async_pool)
        self._sync_server = sync_server
        self._async_server = async_server
        self._prepare: bool | None = None if config.prepared_statements else False
        self._hot_prepare: bool = config.prepared_statements
        self._uuid_sessions = config.layout == "langchain_postgres"

    # -- the operations -------------------------------------------------------------------

    def session(self, session_id: str) -> str:
        """The session id as bound: checked, and for the langchain layout, a canonical UUID."""
        if not isinstance(session_id, str):
            raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
        if self._uuid_sessions:
            try:
                return str(uuid.UUID(session_id))
            except ValueError:
                shown = session_id if len(session_id) <= 80 else session_id[:77] + "..."
                raise ValueError(
                    f"backend {BACKEND!r} with layout='langchain_postgres' stores session ids "
                    f"in a UUID column, so session ids must be UUID strings; got {shown!r}"
                ) from None
        if "\x00" in session_id:
            raise ValueError("session_id must not contain NUL characters")
        try:
            session_id.encode()
        except UnicodeEncodeError:
            raise ValueError("session_id is not valid Unicode (it has a lone surrogate)") from None
        return session_id

    def _fetch_statement(self, session_id: str, limit: int | None
                         ) -> tuple[str, tuple[Any, ...]] | None:
        session = self.session(session_id)
        if limit is None:
            return self.sql.select_all, (session,)
        if limit == 0:
            return None
        return self.sql.select_newest, (session, session, Int8(limit))

    def _insert_params(self, session_id: str, records: Sequence[Mapping[str, Any]]
                       ) -> tuple[str, str, str] | None:
        # Every record is encoded before any I/O: a bad one leaves nothing written.
        batch = "[" + ",".join([encode_record(record) for record in records]) + "]"
        session = self.session(session_id)
        if batch == "[]":
            return None
        if "e+" in batch:
            batch = positional_floats(batch)
        return (session, session, batch)

    def create_collection(self) -> None:
        prepare = self._prepare
        self._sync_call(lambda connection: _run_job(connection, self._create_job(), prepare),
                        "create the table", repeatable=True, transaction=True)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        params = self._insert_params(session_id, records)
        if params is None:
            return
        query, prepare = self.sql.insert, self._hot_prepare
        self._sync_call(lambda connection: connection.execute(query, params, prepare=prepare),
                        "append", repeatable=False)

    def fetch(self, session_id: str, limit: int | None) -> list[dict[str, Any]]:
        statement = self._fetch_statement(session_id, limit)
        if statement is None:
            return []
        query, params = statement
        prepare = self._hot_prepare
        rows: list[tuple[str]] = self._sync_call(
            lambda connection: connection.execute(query, params, prepare=prepare).fetchall(),
            "read", repeatable=True)
        return [decode_record(row[0]) for row in rows]

    def clear(self, session_id: str) -> None:
        params = (self.session(session_id),)
        query, prepare = self.sql.delete, self._hot_prepare
        self._sync_call(lambda connection: connection.execute(query, params, prepare=prepare),
                        "clear", repeatable=True)

    async def acreate_collection(self) -> None:
        prepare = self._prepare

        async def work(connection: AsyncConnection) -> None:
            await _arun_job(connection, self._create_job(), prepare)

        await self._async_call(work, "create the table", repeatable=True, transaction=True)

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        params = self._insert_params(session_id, records)
        if params is None:
            return
        query, prepare = self.sql.insert, self._hot_prepare

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(query, params, prepare=prepare)

        await self._async_call(work, "append", repeatable=False)

    async def afetch(self, session_id: str, limit: int | None) -> list[dict[str, Any]]:
        statement = self._fetch_statement(session_id, limit)
        if statement is None:
            return []
        query, params = statement
        prepare = self._hot_prepare

        async def work(connection: AsyncConnection) -> list[tuple[str]]:
            cursor = await connection.execute(query, params, prepare=prepare)
            return await cursor.fetchall()

        rows = await self._async_call(work, "read", repeatable=True)
        return [decode_record(row[0]) for row in rows]

    async def aclear(self, session_id: str) -> None:
        params = (self.session(session_id),)
        query, prepare = self.sql.delete, self._hot_prepare

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(query, params, prepare=prepare)

        await self._async_call(work, "clear", repeatable=True)

    def close(self) -> None:
        self.sync.close()
        self.async_.close()

    async def aclose(self) -> None:
        self.sync.close()
        await self.async_.aclose()

    # -- running, retrying, translating -----------------------------------------------------

    def _sync_call(self, work: Callable[[SyncConnection], T], action: str, *,
                   repeatable: bool, transaction: bool = False) -> T:
        def attempt() -> T:
            try:
                return self.sync.run(work, transaction=transaction)
            except psycopg.Error as exc:
                raise self._sync_server.translate(
                    exc, action, sent=True, repeatable=repeatable) from exc
            except UnicodeEncodeError as exc:  # dumping the parameters: nothing was sent
                raise _unencodable(exc) from None

        # Most calls succeed at once: tenacity only steps in after a lost connection,
        # counting the failed first try as its first attempt.
        try:
            return attempt()
        except ConnectionLostError as exc:
            first_failure: list[BaseException] = [exc]

        def again() -> T:
            if first_failure:
                raise first_failure.pop()
            return attempt()

        return retry_transient(again, backend=BACKEND, is_transient=is_retryable)

    async def _async_call(self, work: Callable[[AsyncConnection], Awaitable[T]], action: str,
                          *, repeatable: bool, transaction: bool = False) -> T:
        async def attempt() -> T:
            try:
                return await self.async_.run(work, transaction=transaction)
            except psycopg.Error as exc:
                raise self._async_server.translate(
                    exc, action, sent=True, repeatable=repeatable) from exc
            except UnicodeEncodeError as exc:
                raise _unencodable(exc) from None

        try:
            return await attempt()
        except ConnectionLostError as exc:
            first_failure: list[BaseException] = [exc]

        async def again() -> T:
            if first_failure:
                raise first_failure.pop()
            return await attempt()

        return await aretry_transient(again, backend=BACKEND, is_transient=is_retryable)

    # -- create_collection ------------------------------------------------------------------

    def _create_job(self) -> Job:
        """Create what is missing, under a lock, and check the table's layout and version.

        Runs in one transaction. When everything exists it only reads (no DDL, no
        lock), so a role without CREATE privilege can use a prepared table.
        """
        statements = self.sql
        schema = self.config.db_schema
        names = (statements.qualified_table, statements.qualified_meta)
        exists = ("SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL, "
                  "to_regclass(%s) IS NOT NULL")
        schema_name = sql.Identifier(schema).as_string()
        rows = yield exists, (schema_name, *names)
        _, table_exists, meta_exists = rows[0]
        if not (table_exists and meta_exists):
            yield statements.lock_schema, ()
            rows = yield exists, (schema_name, *names)
            schema_exists, table_exists, meta_exists = rows[0]
            if not schema_exists:
                yield statements.create_schema, ()
            if table_exists and not meta_exists:
                columns = yield statements.columns, (statements.qualified_table,)
                self._check_columns(dict(columns))
            if not table_exists:
                yield statements.create_table, ()
            for index_name, create_index in zip(
                statements.index_names, statements.create_indexes, strict=True
            ):
                qualified = sql.Identifier(schema, index_name).as_string()
                rows = yield "SELECT to_regclass(%s) IS NOT NULL", (qualified,)
                if not rows[0][0]:
                    yield create_index, ()
            yield statements.create_meta, ()
            yield statements.write_meta, (str(SCHEMA_VERSION), statements.layout)
        rows = yield statements.read_meta, ()
        self._check_meta(json.loads(rows[0][0] or "{}"))

    def _check_columns(self, columns: dict[str, str]) -> None:
        layout = self.config.layout
        where = f"backend {BACKEND!r}: table {self.sql.qualified_table} exists"
        if columns.get("session_id") == "uuid" and layout == "chathistory":
            raise ConfigError(
                f"{where} with a UUID session_id column, as langchain-postgres makes it: "
                "use layout='langchain_postgres' to read and append to it in place"
            )
        if columns.get("session_id") in ("text", "character varying") and \
                layout == "langchain_postgres":
            raise ConfigError(f"{where} with a text session_id column: use layout='chathistory'")
        for column, allowed in _COMPATIBLE_TYPES[layout].items():
            if columns.get(column) not in allowed:
                raise ConfigError(
                    f"{where} but is not a {layout} table: column {column!r} is "
                    f"{columns.get(column) or 'missing'}, expected {' or '.join(allowed)}"
                )
        if "id" not in columns:
            raise ConfigError(f"{where} but has no id column to order messages by")

    def _check_meta(self, meta: dict[str, str]) -> None:
        where = f"backend {BACKEND!r}: table {self.sql.qualified_table}"
        layout = meta.get("layout")
        if layout != self.config.layout:
            raise ConfigError(
                f"{where} has layout {layout!r} (recorded in {self.sql.qualified_meta}), "
                f"but the backend was configured with layout={self.config.layout!r}"
            )
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            version = -1
        if version > SCHEMA_VERSION:
            raise ChatHistoryError(
                f"{where} has schema version {version}, written by a newer "
                f"chathistory-postgres; this one knows version {SCHEMA_VERSION}: upgrade it"
            )
        if version < 1:
            raise ChatHistoryError(
                f"{where}: {self.sql.qualified_meta} holds no valid schema_version"
            )
