"""The backend's connections: its own psycopg_pool pools, or the application's.

Given ``conninfo``, the backend opens one ``ConnectionPool`` on the first sync
call and one ``AsyncConnectionPool`` on the first async call; ``close()`` and
``aclose()`` close them, and a later call opens new ones. Their connections are
autocommit: one statement is one transaction, with no BEGIN or COMMIT round trip.

The async pool belongs to the event loop of the first async call: an async call
from any other loop raises :class:`~chathistory.ChatHistoryError` while that loop
is open, until ``aclose()`` (in that loop) releases it. Once that loop has been
closed, the next async call drops its pool and opens one in its own loop. Make
one backend per event loop, and ``aclose()`` it before the loop ends. The pool
has a fixed size (``async_pool_size`` connections, all opened before the first
call uses it), so it is never opening a connection in the
background when its loop ends: psycopg_pool cannot stop such a task, and
``asyncio.run`` would wait for it forever.

Both pools check a connection before lending it, with the pool's ``check``
callback, at no round trip: an idle connection whose socket is readable was
closed by the server (a restart, an idle timeout, a terminated backend), so it
is closed and replaced before anything is sent on it, and even an append is safe.
"""

from __future__ import annotations

import asyncio
import math
import select
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from chathistory import BackendUnavailableError, ChatHistoryError, ConfigError
from chathistory_postgres.config import PostgresConfig
from chathistory_postgres.errors import connect_error

__all__ = ["AsyncConnection", "Client", "Connection"]

T = TypeVar("T")
Connection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]


def _closed_by_server(connection: Connection | AsyncConnection) -> bool:
    """True for an idle connection the server has closed, found without a round trip.

    An idle connection is sent nothing unprompted, except when the server
    shuts it down: then it is sent an error message and EOF, and its socket
    becomes readable.
    """
    if connection.closed:  # (the pool discards a broken connection when it is returned)
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def check(connection: Connection) -> None:
    """The sync pool's ``check`` callback: a connection the server closed is discarded."""
    if _closed_by_server(connection):
        connection.close()  # so the pool replaces it instead of keeping it
        raise psycopg.OperationalError("the server closed this idle connection")


async def acheck(connection: AsyncConnection) -> None:
    """The async pool's ``check`` callback."""
    if _closed_by_server(connection):
        await connection.close()
        raise psycopg.OperationalError("the server closed this idle connection")


def _work(connection: Connection, work: Callable[[Connection], T], transaction: bool) -> T:
    """``work(connection)``, in a transaction if asked or if the connection is not autocommit
    (an app's connection: outside a transaction of the app's, the call commits by itself)."""
    if transaction or not connection.autocommit:
        with connection.transaction():
            return work(connection)
    return work(connection)


async def _awork(connection: AsyncConnection, work: Callable[[AsyncConnection], Awaitable[T]],
                 transaction: bool) -> T:
    if transaction or not connection.autocommit:
        async with connection.transaction():
            return await work(connection)
    return await work(connection)


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
    app_object = config.connection or config.async_connection
    if config.conninfo is None and app_object is not None:
        info = app_object.info
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


class Client:
    """Lends connections for the backend's calls, sync and async, from one configuration."""

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
        self.has_async = (self.conninfo is not None or config.async_connection is not None
                          or config.async_pool is not None)
        self._lock = threading.Lock()  # binding the async pool: never held across I/O
        self._sync_lock = threading.Lock()  # opening and closing the sync pool
        self._connection_lock = threading.Lock()  # one call at a time on an app connection
        self._aconnection_lock = asyncio.Lock()
        self._pool: ConnectionPool[Any] | None = config.pool
        self._apool: AsyncConnectionPool[Any] | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aopening: asyncio.Lock | None = None

    # -- sync ----------------------------------------------------------------------------

    def run(self, work: Callable[[Connection], T], *, transaction: bool = False) -> T:
        """Run ``work`` on a connection; in a transaction if asked, or if not autocommit.

        Raises:
            psycopg.Error: ``work`` failed, or no pooled connection came in time.
            chathistory.ChatHistoryError: the backend could not connect.
        """
        connection = self.config.connection
        if connection is not None:
            with self._connection_lock:
                if connection.closed:
                    raise self._app_connection_closed()
                return _work(connection, work, transaction)
        # getconn/putconn rather than pool.connection(): that context manager also
        # enters the connection's own, whose commit on exit is an extra locked call
        # that autocommit connections do not need (a measurable share of a turn).
        pool = self._pool or self.pool()
        connection = pool.getconn()
        try:
            return _work(connection, work, transaction)
        finally:
            pool.putconn(connection)

    def pool(self) -> ConnectionPool[Any]:
        """The pool of the sync calls: the application's, or the backend's (opened if needed)."""
        with self._sync_lock:
            if self._pool is not None:
                return self._pool
            if self.conninfo is None:
                raise ConfigError(
                    "backend 'postgres' was given only async connections (async_connection "
                    "or async_pool): its sync methods need conninfo, connection or pool")
            # One direct connection first: it says why a server refuses us (a
            # pool would only retry in the background until its timeout).
            try:
                psycopg.Connection.connect(self.conninfo, **self.kwargs).close()
            except psycopg.Error as exc:
                raise connect_error(exc, self.server) from exc
            pool: ConnectionPool[Any] = ConnectionPool(
                self.conninfo, kwargs=self.kwargs, configure=self._configure, check=check,
                min_size=self.config.min_size, max_size=self.config.max_size,
                timeout=self.config.timeout, name="chathistory-postgres", open=False)
            try:
                pool.open(wait=self.config.min_size > 0, timeout=self.config.connect_timeout)
            except PoolTimeout as exc:
                pool.close()
                raise self._open_timeout() from exc
            self._pool = pool
            return pool

    def _configure(self, connection: Connection) -> None:
        if self.setup:
            connection.execute(self.setup)

    # -- async ---------------------------------------------------------------------------

    async def arun(self, work: Callable[[AsyncConnection], Awaitable[T]], *,
                   transaction: bool = False) -> T:
        """Async :meth:`run`, on the async connection or pool."""
        connection = self.config.async_connection
        if connection is not None:
            async with self._aconnection_lock:
                if connection.closed:
                    raise self._app_connection_closed()
                return await _awork(connection, work, transaction)
        pool = self.config.async_pool
        if pool is None:
            pool = self._apool if self._aloop is asyncio.get_running_loop() else None
            pool = pool or await self.apool()
        connection = await pool.getconn()
        try:
            return await _awork(connection, work, transaction)
        finally:
            await pool.putconn(connection)

    async def apool(self) -> AsyncConnectionPool[Any]:
        """The backend's own async pool, opened in (and bound to) the running loop if needed."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._aloop is not None and self._aloop is not loop and self._aloop.is_closed():
                # Its loop has ended (asyncio.run returned without aclose): nothing can
                # close that pool any more, and nothing else can use it. Drop it (the
                # garbage collector closes its sockets) and open one in this loop.
                self._aloop = self._aopening = self._apool = None
            if self._aloop is None:
                self._aloop, self._aopening = loop, asyncio.Lock()
            elif self._aloop is not loop:
                raise self._other_loop()
            opening = self._aopening
        assert opening is not None
        async with opening:
            if self._apool is not None:
                return self._apool
            try:
                self._apool = await self._open_async_pool()
            except BaseException:
                with self._lock:  # nothing open: nothing bound
                    if self._aopening is opening:
                        self._aloop = self._aopening = None
                raise
            return self._apool

    async def _open_async_pool(self) -> AsyncConnectionPool[Any]:
        assert self.conninfo is not None
        try:
            await (await psycopg.AsyncConnection.connect(self.conninfo, **self.kwargs)).close()
        except psycopg.Error as exc:
            raise connect_error(exc, self.server) from exc
        setup = self.setup

        async def configure(connection: AsyncConnection) -> None:
            if setup:
                await connection.execute(setup)

        size = self.config.async_pool_size
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.conninfo, kwargs=self.kwargs, configure=configure, check=acheck,
            min_size=size, max_size=size, timeout=self.config.timeout,
            name="chathistory-postgres-async", open=False)
        try:
            await pool.open(wait=True, timeout=self.config.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise self._open_timeout() from exc
        return pool

    def _release_async_pool(self, running: asyncio.AbstractEventLoop | None
                            ) -> AsyncConnectionPool[Any] | None:
        """Unbind the async pool and return it if ``running`` is its loop.

        A pool whose loop has ended is dropped: nothing can close it any more
        (the garbage collector closes its sockets). One whose loop is still open
        stays, unless that loop is ``running``.
        """
        with self._lock:
            loop, pool = self._aloop, self._apool
            if loop is None or (loop is not running and not loop.is_closed()):
                return None
            self._aloop = self._aopening = self._apool = None
        return pool if loop is running else None

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the backend's own sync pool; drop an async pool whose loop has ended.

        An async pool whose loop is still open is closed by ``aclose()`` in that loop.
        Connections and pools the application gave are left open.
        """
        with self._sync_lock:
            pool = self._pool if self._pool is not self.config.pool else None
            self._pool = self.config.pool
        if pool is not None:
            pool.close()
        self._release_async_pool(None)

    async def aclose(self) -> None:
        """Close the backend's own pools (the sync one in a worker thread).

        Raises:
            chathistory.ChatHistoryError: the async pool belongs to another event
                loop, which has not ended.
        """
        loop = asyncio.get_running_loop()
        if self._aloop is not None and self._aloop is not loop and not self._aloop.is_closed():
            raise self._other_loop()
        if self._pool is not None and self._pool is not self.config.pool:
            await asyncio.to_thread(self.close)
        pool = self._release_async_pool(loop)
        if pool is not None:
            await pool.close()

    # -- errors --------------------------------------------------------------------------

    def _other_loop(self) -> ChatHistoryError:
        state = "has ended" if self._aloop is not None and self._aloop.is_closed() \
            else "is another one"
        return ChatHistoryError(
            "backend 'postgres': its async pool belongs to the event loop of its first "
            f"async call, which {state}. Make one backend per event loop, and await "
            "backend.aclose() in a loop before it ends (or call backend.close() once "
            "it has ended) to use the backend from another loop")

    def _open_timeout(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend 'postgres' could not open its pool to {self.server} within "
            f"{self.config.connect_timeout:g} s")

    def _app_connection_closed(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend 'postgres': the application's connection to {self.server} is "
            "closed; open a new one (or pass a pool, which reconnects by itself)")
