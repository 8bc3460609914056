"""The driver of the core's runner: psycopg_pool's pools, or the application's connections.

One ``ConnectionPool``, and one fixed-size ``AsyncConnectionPool`` per event loop (the
core's policy), of autocommit connections. A request is a statement and its parameters
(the reply: its rows), or a :class:`Copy` of rows into the table.
"""

from __future__ import annotations

import asyncio
import math
import select
import threading
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager
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

_ROWS = psycopg.pq.ExecStatus.TUPLES_OK

RECONNECT_TIMEOUT = 1.0
"""A pool's reconnection: two tries 1 s apart, then ``reconnect_failed`` starts another if
calls wait (with psycopg_pool's backoff, 1, 2, 4 s, a pool came back 4 s late)."""

ACTIONS = {"create_collection": "create the table", "append": "append",
           "append_many": "append", "append_many_text": "append", "clear": "clear",
           "delete_sessions_before": "delete sessions", "update_session": "update a session",
           "erase_sessions": "erase sessions", "restore_summaries": "restore summaries"}
"""How an operation is named in errors; the others read."""


class Copy(NamedTuple):
    """A request: ``COPY ... FROM STDIN`` of ``rows``."""

    statement: str
    rows: list[tuple[str, str]]


def _closed_by_server(connection: Connection | AsyncConnection) -> bool:
    """Whether the server closed this idle connection: then, and only then, it sent
    something unprompted (an error and EOF), so its socket is readable. No round trip.
    (A pool never lends a connection psycopg knows is closed: it discards those.)"""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class _Lease(AbstractContextManager[Connection], AbstractAsyncContextManager[AsyncConnection]):
    """A connection from ``source`` for one try of ``call`` (``with`` or ``async with``),
    given back on exit: ``source`` is the application's connection, lent one call at a time,
    or a pool, which lends one the server has not closed (a closed one is given back, the
    pool replaces it, and the next is taken at once: after a failed ``check`` callback
    psycopg_pool sleeps 1, 2, 4 s, and under connection churn calls waited out the pool's
    timeout; nothing was sent, so even an append is safe). In a transaction when the call
    asks for one, or the connection is not in autocommit (an application's: each call
    commits by itself, or is a savepoint in the app's own). (A class: a ``@contextmanager``
    on every call's path cost about three times as much, and the event loop also registers
    the first step of an async generator.)"""

    def __init__(self, driver: PostgresDriver, source: Any, call: Call) -> None:
        self.driver, self.source, self.call = driver, source, call
        self.connection: Any = None  # (sync or async, once entered)
        self.transaction: Any = None

    def __enter__(self) -> Connection:
        source, driver = self.source, self.driver
        if isinstance(source, psycopg.Connection):
            driver.lock.acquire()
            if source.closed:
                driver.lock.release()
                raise driver.lent_connection_closed()
            connection = source
        else:
            connection = source.getconn(driver.config.timeout)
            deadline = time.monotonic() + driver.config.timeout
            while _closed_by_server(connection):
                connection.close()
                source.putconn(connection)
                connection = source.getconn(max(0.0, deadline - time.monotonic()))
        self.connection = connection
        if self.call.transaction or not connection.autocommit:
            try:
                transaction = connection.transaction()
                transaction.__enter__()
            except BaseException:
                self.__exit__(None, None, None)  # (gives the connection back)
                raise
            self.transaction = transaction
        return connection

    def __exit__(self, *exc_info: Any) -> bool | None:
        try:
            return None if self.transaction is None else self.transaction.__exit__(*exc_info)
        finally:
            if isinstance(self.source, psycopg.Connection):
                self.driver.lock.release()
            else:
                self.source.putconn(self.connection)

    async def __aenter__(self) -> AsyncConnection:
        source, driver = self.source, self.driver
        if isinstance(source, psycopg.AsyncConnection):
            await driver.alock.acquire()
            if source.closed:
                driver.alock.release()
                raise driver.lent_connection_closed()
            connection = source
        else:
            connection = await source.getconn(driver.config.timeout)
            deadline = time.monotonic() + driver.config.timeout
            while _closed_by_server(connection):
                await connection.close()
                await source.putconn(connection)
                connection = await source.getconn(max(0.0, deadline - time.monotonic()))
        self.connection = connection
        if self.call.transaction or not connection.autocommit:
            try:
                transaction = connection.transaction()
                await transaction.__aenter__()
            except BaseException:
                await self.__aexit__(None, None, None)  # (gives the connection back)
                raise
            self.transaction = transaction
        return connection

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        try:
            return None if self.transaction is None else await self.transaction.__aexit__(*exc_info)
        finally:
            if isinstance(self.source, psycopg.AsyncConnection):
                self.driver.alock.release()
            else:
                await self.source.putconn(self.connection)


def _regrow(pool: ConnectionPool[Any]) -> None:
    if pool.get_stats().get("requests_waiting"):
        pool.check()


async def _aregrow(pool: AsyncConnectionPool[Any]) -> None:
    if pool.get_stats().get("requests_waiting"):
        await pool.check()


def _server(config: PostgresConfig) -> str:
    """host:port/dbname, as errors name the server (never the password)."""
    lent = config.connection or config.async_connection
    pool = config.pool or config.async_pool
    if config.conninfo is not None:
        try:
            params = conninfo_to_dict(config.conninfo.get_secret_value())
        except psycopg.Error:  # its message quotes the string, password included
            raise ConfigError(
                "backend 'postgres': option 'conninfo' is not a valid libpq URL "
                "(postgresql://user:password@host:port/dbname) or key=value string") from None
    elif lent is not None:
        params = {"host": lent.info.host, "port": lent.info.port, "dbname": lent.info.dbname}
    elif isinstance(pool.conninfo, str):
        params = conninfo_to_dict(pool.conninfo)
    else:
        return "(app pool)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    dbname = params.get("dbname") or params.get("user") or "(default database)"
    return f"{host}:{params.get('port') or 5432}/{dbname}"


class PostgresDriver(Driver[Connection, AsyncSource, AsyncConnection]):
    """The backend's own pools (from ``conninfo``), or the application's connections.

    ``server`` is host:port/dbname, as errors name it.
    """

    def __init__(self, config: PostgresConfig) -> None:
        for name, kind in (("connection", psycopg.Connection), ("pool", ConnectionPool),
                           ("async_connection", psycopg.AsyncConnection),
                           ("async_pool", AsyncConnectionPool)):
            value = getattr(config, name)
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"backend 'postgres': option {name!r} must be an open "
                                  f"{kind.__module__.split('.')[0]}.{kind.__name__}, "
                                  f"not {type(value).__name__}")
        self.config = config
        self.server = _server(config)
        self.conninfo = None if config.conninfo is None else config.conninfo.get_secret_value()
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(config.connect_timeout)),
            "prepare_threshold": 5 if config.prepared_statements else None,
            # libpq's: unless the conninfo or PGAPPNAME names the application.
            "fallback_application_name": "chathistory-postgres",
        }
        self.prepare = config.prepared_statements
        self.setup = (f"SET synchronous_commit = {config.synchronous_commit}"
                      if config.synchronous_commit else None)
        self.native_async = (self.conninfo is not None or config.async_connection is not None
                             or config.async_pool is not None)
        self.pool: ConnectionPool[Any] | None = config.pool
        self.pool_lock = threading.Lock()  # opening and closing the own sync pool
        self.lock = threading.Lock()  # one call at a time on an app's connection
        self.alock = asyncio.Lock()

    def connection(self, call: Call) -> AbstractContextManager[Connection]:
        # getconn/putconn rather than pool.connection(): that also enters the
        # connection's own context, whose commit on exit autocommit does not need.
        lent = self.config.connection
        source = lent if lent is not None else (self.pool or self.open_sync_pool())
        return _Lease(self, source, call)

    def send(self, connection: Connection, request: Any) -> Any:
        if isinstance(request, Copy):
            with connection.cursor() as cursor, cursor.copy(request.statement) as copy:
                for row in request.rows:
                    copy.write_row(row)
            return []
        query, params = request  # those with parameters are the hot ones, prepared
        cursor = connection.execute(query, params, prepare=self.prepare and bool(params))
        result = cursor.pgresult  # (rows, or none to fetch)
        return cursor.fetchall() if result is not None and result.status == _ROWS else []

    def _pool_options(self) -> dict[str, Any]:
        """The options of a pool of ours, after one direct connection: it says why a server
        refuses us (a pool would only retry)."""
        if self.conninfo is None:
            raise ConfigError(
                "backend 'postgres' was given only async connections (async_connection "
                "or async_pool): its sync methods need conninfo, connection or pool")
        try:
            psycopg.Connection.connect(self.conninfo, **self.kwargs).close()
        except psycopg.Error as exc:
            raise errors.connect_error(exc, self.server) from exc
        return {"conninfo": self.conninfo, "kwargs": self.kwargs, "timeout": self.config.timeout,
                "open": False, "reconnect_timeout": RECONNECT_TIMEOUT,
                "name": "chathistory-postgres"}

    def open_sync_pool(self) -> ConnectionPool[Any]:
        """The own sync pool, opened by the first sync call."""
        with self.pool_lock:
            if self.pool is None:
                pool: ConnectionPool[Any] = ConnectionPool(
                    configure=self._configure, min_size=self.config.min_size,
                    max_size=self.config.max_size, reconnect_failed=_regrow, **self._pool_options())
                try:
                    pool.open(wait=self.config.min_size > 0, timeout=self.config.connect_timeout)
                except PoolTimeout as exc:
                    pool.close()
                    raise self._open_timeout() from exc
                self.pool = pool
            return self.pool

    def _configure(self, connection: Connection) -> None:
        if self.setup:
            connection.execute(self.setup)

    async def _aconfigure(self, connection: AsyncConnection) -> None:
        if self.setup:
            await connection.execute(self.setup)

    async def open_pool(self) -> AsyncSource:
        lent: AsyncSource | None = self.config.async_pool or self.config.async_connection
        if lent is not None:
            return lent
        options = await asyncio.to_thread(self._pool_options)  # resolving the host may block
        size = self.config.async_pool_size
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            configure=self._aconfigure, min_size=size, max_size=size, reconnect_failed=_aregrow,
            **options)
        try:
            await pool.open(wait=True, timeout=self.config.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise self._open_timeout() from exc
        return pool

    def async_connection(self, pool: AsyncSource, call: Call
                         ) -> AbstractAsyncContextManager[AsyncConnection]:
        return _Lease(self, pool, call)

    async def asend(self, connection: AsyncConnection, request: Any) -> Any:
        if isinstance(request, Copy):
            async with connection.cursor() as cursor, cursor.copy(request.statement) as copy:
                for row in request.rows:
                    await copy.write_row(row)
            return []
        query, params = request
        cursor = await connection.execute(query, params, prepare=self.prepare and bool(params))
        result = cursor.pgresult
        return await cursor.fetchall() if result is not None and result.status == _ROWS else []

    async def close_pool(self, pool: AsyncSource) -> None:
        if pool is not self.config.async_pool and pool is not self.config.async_connection:
            await pool.close()

    def close(self) -> None:
        with self.pool_lock:
            pool = self.pool if self.pool is not self.config.pool else None
            self.pool = self.config.pool
        if pool is not None:
            pool.close()

    is_transient = staticmethod(errors.is_transient)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        return errors.translate(error, action=ACTIONS.get(call.operation, "read"),
                                server=self.server)

    def _open_timeout(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend 'postgres' could not open its pool to {self.server} within "
            f"{self.config.connect_timeout:g} s")

    def lent_connection_closed(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend 'postgres': the application's connection to {self.server} is "
            "closed; open a new one (or pass a pool, which reconnects by itself)")
