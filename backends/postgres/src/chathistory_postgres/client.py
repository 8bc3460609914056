"""The driver of the core's runner: psycopg_pool's pools, or the application's connections.

Given ``conninfo``, the backend opens one ``ConnectionPool`` on its first sync
call and, by the core's event-loop policy, one ``AsyncConnectionPool`` per
event loop on that loop's first async call. Their connections are autocommit:
one statement is one transaction, with no BEGIN or COMMIT round trip. The
async pools have a fixed size (``async_pool_size``, all opened before the
first call uses them), so none is opening a connection in a background task
when its loop ends: psycopg_pool's tasks can swallow the cancellation that
``asyncio.run`` sends, and the loop would wait for them forever.

A request is a statement and its parameters (the reply: its rows), or a
:class:`Copy` of rows into the table.
"""

from __future__ import annotations

import asyncio
import math
import select
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from typing import Any, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from chathistory import BackendUnavailableError, ConfigError
from chathistory.driver import Call, Driver
from chathistory_postgres import errors
from chathistory_postgres.config import PostgresConfig

__all__ = ["AsyncConnection", "Connection", "Copy", "PostgresDriver"]

Connection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]
AsyncSource = AsyncConnectionPool[Any] | AsyncConnection

RECONNECT_TIMEOUT = 1.0
"""Seconds psycopg_pool keeps reconnecting in the background before it gives up.

Its backoff starts at 1 s and doubles (1, 2, 4 s...), so after a 3 s outage a
pool would come back 4 s late. With this, each attempt to reconnect gives up
after two tries 1 s apart, and ``reconnect_failed`` starts a new one at once if
calls are waiting (``pool.check()`` grows an empty pool).
"""

ACTIONS = {"create_collection": "create the table", "append": "append",
           "append_many": "append", "append_many_text": "append", "clear": "clear",
           "delete_sessions_before": "delete sessions"}
"""How an operation is named in errors; the others read."""


class Copy(NamedTuple):
    """A request: ``COPY ... FROM STDIN`` of ``rows``."""

    statement: str
    rows: list[tuple[str, str]]


def _closed_by_server(connection: Connection | AsyncConnection) -> bool:
    """True for an idle connection the server has closed, found without a round trip.

    An idle connection is sent nothing unprompted, except when the server shuts
    it down (a restart, an idle timeout, a terminated backend): then it is sent
    an error and EOF, and its socket becomes readable.
    """
    if connection.closed:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _getconn(pool: ConnectionPool[Any], timeout: float) -> Connection:
    """A connection from ``pool`` that the server has not closed, within ``timeout``.

    Not the pool's ``check`` callback: after a failed check psycopg_pool sleeps
    1 s, then 2, then 4, before it lends another connection, so while connections
    are being killed every call waits seconds, and then the pool's timeout. A
    closed one is given back instead (the pool replaces it in the background) and
    the next taken at once; nothing was sent on it, so even an append is safe.
    """
    deadline = time.monotonic() + timeout
    while True:
        connection: Connection = pool.getconn(max(0.0, deadline - time.monotonic()))
        if not _closed_by_server(connection):
            return connection
        connection.close()
        pool.putconn(connection)


async def _agetconn(pool: AsyncConnectionPool[Any], timeout: float) -> AsyncConnection:
    deadline = time.monotonic() + timeout
    while True:
        connection: AsyncConnection = await pool.getconn(max(0.0, deadline - time.monotonic()))
        if not _closed_by_server(connection):
            return connection
        await connection.close()
        await pool.putconn(connection)


def _regrow(pool: ConnectionPool[Any]) -> None:
    if pool.get_stats().get("requests_waiting"):
        pool.check()


async def _aregrow(pool: AsyncConnectionPool[Any]) -> None:
    if pool.get_stats().get("requests_waiting"):
        await pool.check()


def _check_type(name: str, value: object, expected: type[Any], hint: str) -> None:
    if value is not None and not isinstance(value, expected):
        raise ConfigError(
            f"backend 'postgres': option {name!r} must be {hint}, not {type(value).__name__}")


def _describe(params: dict[str, Any]) -> str:
    """host:port/dbname, as errors name the server (never the password)."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    dbname = params.get("dbname") or params.get("user") or "(default database)"
    return f"{host}:{params.get('port') or 5432}/{dbname}"


def _server(config: PostgresConfig) -> str:
    app_connection = config.connection or config.async_connection
    if config.conninfo is None and app_connection is not None:
        info = app_connection.info
        return _describe({"host": info.host, "port": info.port, "dbname": info.dbname})
    pool = config.pool or config.async_pool
    conninfo = config.conninfo.get_secret_value() if config.conninfo is not None \
        else pool.conninfo if pool is not None and isinstance(pool.conninfo, str) else None
    try:
        return _describe(conninfo_to_dict(conninfo)) if conninfo is not None else "(app pool)"
    except psycopg.Error:
        # psycopg's message quotes the string, password included.
        raise ConfigError(
            "backend 'postgres': option 'conninfo' is not a valid libpq URL "
            "(postgresql://user:password@host:port/dbname) or key=value string") from None


class PostgresDriver(Driver[Connection, AsyncSource, AsyncConnection]):
    """The backend's connections: its own pools (from ``conninfo``), or the application's.

    A connection the application lends that is not in autocommit mode is used
    inside ``connection.transaction()``: outside a transaction of the
    application's each call commits by itself, inside one it is a savepoint.

    Attributes:
        server: host:port/dbname, as errors name the server.
    """

    def __init__(self, config: PostgresConfig) -> None:
        _check_type("connection", config.connection, psycopg.Connection,
                    "an open psycopg.Connection (psycopg 3)")
        _check_type("async_connection", config.async_connection, psycopg.AsyncConnection,
                    "an open psycopg.AsyncConnection (psycopg 3)")
        _check_type("pool", config.pool, ConnectionPool, "a psycopg_pool.ConnectionPool")
        _check_type("async_pool", config.async_pool, AsyncConnectionPool,
                    "a psycopg_pool.AsyncConnectionPool")
        self.config = config
        self.server = _server(config)
        self.conninfo = config.conninfo.get_secret_value() if config.conninfo else None
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(config.connect_timeout)),
            "prepare_threshold": 5 if config.prepared_statements else None,
        }
        if self.conninfo is not None and "application_name" not in conninfo_to_dict(
                self.conninfo):
            self.kwargs["application_name"] = "chathistory-postgres"
        self.setup = (f"SET synchronous_commit = {config.synchronous_commit}"
                      if config.synchronous_commit else None)
        self.native_async = (self.conninfo is not None or config.async_connection is not None
                             or config.async_pool is not None)
        self._pool: ConnectionPool[Any] | None = config.pool
        self._pool_lock = threading.Lock()  # opening and closing the own sync pool
        self._connection_lock = threading.Lock()  # one call at a time on an app connection
        self._aconnection_lock = asyncio.Lock()

    def _transaction(self, connection: Connection, call: Call
                     ) -> AbstractContextManager[Any]:
        if call.transaction or not connection.autocommit:
            return connection.transaction()
        return nullcontext()

    @contextmanager
    def connection(self, call: Call) -> Iterator[Connection]:
        lent = self.config.connection
        if lent is not None:
            with self._connection_lock:
                if lent.closed:
                    raise self._lent_connection_closed()
                with self._transaction(lent, call):
                    yield lent
            return
        # getconn/putconn rather than pool.connection(): that also enters the
        # connection's own context, whose commit on exit autocommit does not need.
        pool = self._pool or self._open_pool()
        connection = _getconn(pool, self.config.timeout)
        try:
            with self._transaction(connection, call):
                yield connection
        finally:
            pool.putconn(connection)

    def send(self, connection: Connection, request: Any) -> Any:
        if isinstance(request, Copy):
            with connection.cursor() as cursor, cursor.copy(request.statement) as copy:
                for row in request.rows:
                    copy.write_row(row)
            return []
        cursor = connection.execute(*request)
        return cursor.fetchall() if cursor.description is not None else []

    def _open_pool(self) -> ConnectionPool[Any]:
        with self._pool_lock:
            if self._pool is not None:
                return self._pool
            if self.conninfo is None:
                raise ConfigError(
                    "backend 'postgres' was given only async connections (async_connection "
                    "or async_pool): its sync methods need conninfo, connection or pool")
            self._connect_once()
            pool: ConnectionPool[Any] = ConnectionPool(
                self.conninfo, kwargs=self.kwargs, configure=self._configure,
                min_size=self.config.min_size, max_size=self.config.max_size,
                timeout=self.config.timeout, reconnect_timeout=RECONNECT_TIMEOUT,
                reconnect_failed=_regrow, name="chathistory-postgres", open=False)
            try:
                pool.open(wait=self.config.min_size > 0, timeout=self.config.connect_timeout)
            except PoolTimeout as exc:
                pool.close()
                raise self._open_timeout() from exc
            self._pool = pool
            return pool

    def _connect_once(self) -> None:
        """One direct connection: it says why a server refuses us (a pool would only retry)."""
        assert self.conninfo is not None
        try:
            psycopg.Connection.connect(self.conninfo, **self.kwargs).close()
        except psycopg.Error as exc:
            raise errors.connect_error(exc, self.server) from exc

    def _configure(self, connection: Connection) -> None:
        if self.setup:
            connection.execute(self.setup)

    # -- async -----------------------------------------------------------------------------

    async def open_pool(self) -> AsyncSource:
        lent: AsyncSource | None = self.config.async_pool or self.config.async_connection
        if lent is not None:
            return lent
        await asyncio.to_thread(self._connect_once)  # resolving the host may block
        setup = self.setup

        async def configure(connection: AsyncConnection) -> None:
            if setup:
                await connection.execute(setup)

        size = self.config.async_pool_size
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.conninfo or "", kwargs=self.kwargs, configure=configure, min_size=size,
            max_size=size, timeout=self.config.timeout, reconnect_timeout=RECONNECT_TIMEOUT,
            reconnect_failed=_aregrow, name="chathistory-postgres-async", open=False)
        try:
            await pool.open(wait=True, timeout=self.config.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise self._open_timeout() from exc
        return pool

    @asynccontextmanager
    async def async_connection(self, pool: AsyncSource, call: Call
                               ) -> AsyncIterator[AsyncConnection]:
        if isinstance(pool, psycopg.AsyncConnection):
            async with self._aconnection_lock:
                if pool.closed:
                    raise self._lent_connection_closed()
                if call.transaction or not pool.autocommit:
                    async with pool.transaction():
                        yield pool
                else:
                    yield pool
            return
        connection = await _agetconn(pool, self.config.timeout)
        try:
            if call.transaction or not connection.autocommit:
                async with connection.transaction():
                    yield connection
            else:
                yield connection
        finally:
            await pool.putconn(connection)

    async def asend(self, connection: AsyncConnection, request: Any) -> Any:
        if isinstance(request, Copy):
            async with connection.cursor() as cursor, cursor.copy(request.statement) as copy:
                for row in request.rows:
                    await copy.write_row(row)
            return []
        cursor = await connection.execute(*request)
        return await cursor.fetchall() if cursor.description is not None else []

    async def close_pool(self, pool: AsyncSource) -> None:
        if pool is not self.config.async_pool and pool is not self.config.async_connection:
            await pool.close()

    def close(self) -> None:
        with self._pool_lock:
            pool = self._pool if self._pool is not self.config.pool else None
            self._pool = self.config.pool
        if pool is not None:
            pool.close()

    # -- errors ----------------------------------------------------------------------------

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        return errors.is_transient(error, write=write)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        return errors.translate(error, action=ACTIONS.get(call.operation, "read"),
                                server=self.server)

    def _open_timeout(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend 'postgres' could not open its pool to {self.server} within "
            f"{self.config.connect_timeout:g} s")

    def _lent_connection_closed(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend 'postgres': the application's connection to {self.server} is "
            "closed; open a new one (or pass a pool, which reconnects by itself)")
