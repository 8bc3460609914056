"""Where the backend gets its connections: its own pools, or the application's.

The backend's own sync pool opens on the first sync call; its async pools open
on the first async call, one per event loop (an asyncio pool belongs to the
loop that opened it, and code that calls ``asyncio.run`` per request has a new
loop each time). Connections are autocommit: one statement is one transaction,
with no BEGIN or COMMIT round trip.

Before a pooled connection is used it is checked without a round trip: an idle
connection whose socket is readable has been closed by the server (a restart,
an idle timeout, a terminated backend). Such a connection is discarded before
any statement is sent, so even an append can then be retried safely.
"""

from __future__ import annotations

import asyncio
import math
import select
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from weakref import WeakSet

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from chathistory import BackendUnavailableError, ConfigError
from chathistory_postgres._errors import ConnectionLostError, Server
from chathistory_postgres.config import PostgresConfig

__all__ = ["AsyncConnections", "ConnectionSettings", "SyncConnections"]

T = TypeVar("T")

SyncConnection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]


def _app_connection_closed(server: Server) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend 'postgres': the application's connection to {server.description} is "
        "closed; open a new one (or pass a pool, which reconnects by itself)"
    )


def _socket_readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # pragma: no cover - Windows
    return bool(readable)


def looks_closed(connection: SyncConnection | AsyncConnection) -> bool:
    """True if an idle connection was closed by the server, found without a round trip.

    An idle connection is sent nothing unprompted, except when the server
    shuts it down: then it is sent an error message and EOF, and its socket
    becomes readable.
    """
    if connection.closed or connection.broken:
        return True
    try:
        return _socket_readable(connection.pgconn.socket)
    except (psycopg.Error, OSError, ValueError):
        return True


class ConnectionSettings:
    """What the backend's own pools connect with, and how errors name the server."""

    def __init__(self, config: PostgresConfig, server: Server, conninfo: str,
                 parameters: dict[str, Any]) -> None:
        self.config = config
        self.server = server
        self.conninfo = conninfo
        self.connect_timeout = config.connect_timeout
        self.timeout = config.timeout
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(config.connect_timeout)),
            "prepare_threshold": 5 if config.prepared_statements else None,
        }
        if "application_name" not in parameters:
            kwargs["application_name"] = "chathistory-postgres"
        self.kwargs = kwargs
        self.setup = (
            f"SET synchronous_commit = {config.synchronous_commit}"
            if config.synchronous_commit else None
        )


class SyncConnections:
    """Connections for the sync methods: an app's connection or pool, or the backend's pool."""

    def __init__(self, settings: ConnectionSettings | None, *, server: Server,
                 connection: SyncConnection | None = None,
                 pool: ConnectionPool[Any] | None = None) -> None:
        self.settings = settings
        self.server = server
        self._connection = connection
        self._connection_lock = threading.Lock()
        self._app_pool = pool
        self._own_pool: ConnectionPool[Any] | None = None
        self._pool: ConnectionPool[Any] | None = pool
        self._open_lock = threading.Lock()
        self.timeout = settings.timeout if settings else 30.0

    def run(self, work: Callable[[SyncConnection], T], *, transaction: bool = False) -> T:
        """Run ``work`` on a healthy connection, in a transaction if asked or if not autocommit.

        Raises:
            chathistory.ChatHistoryError: no connection could be had; nothing was sent
                (:class:`ConnectionLostError` when trying again may help).
            psycopg.Error: ``work`` failed.
        """
        if self._connection is not None:
            return self._run_on_app_connection(work, transaction)
        pool = self._pool or self._open()
        connection = self._checkout(pool)
        try:
            if transaction or not connection.autocommit:
                with connection.transaction():
                    return work(connection)
            return work(connection)
        finally:
            pool.putconn(connection)

    def _run_on_app_connection(self, work: Callable[[SyncConnection], T], transaction: bool
                               ) -> T:
        connection = self._connection
        assert connection is not None
        with self._connection_lock:
            if connection.closed:
                raise _app_connection_closed(self.server)
            if transaction or not connection.autocommit:
                with connection.transaction():
                    return work(connection)
            return work(connection)

    def _checkout(self, pool: ConnectionPool[Any]) -> SyncConnection:
        for _ in range(pool.max_size + 2):
            try:
                connection: SyncConnection = pool.getconn(self.timeout)
            except PoolTimeout as exc:
                raise self.server.pool_timeout(self.timeout) from exc
            if not looks_closed(connection):
                return connection
            # Closed by the server while idle: drop it; the pool opens a replacement.
            connection.close()
            pool.putconn(connection)
        raise ConnectionLostError(
            f"backend 'postgres': every pooled connection to {self.server.description} "
            "was found closed")

    def _open(self) -> ConnectionPool[Any]:
        with self._open_lock:
            if self._pool is not None:
                return self._pool
            settings = self.settings
            if settings is None:
                raise ConfigError(
                    "backend 'postgres' was given only async connections (async_connection "
                    "or async_pool): its sync methods need conninfo, connection or pool"
                )
            # One direct connection first: it says why a server refuses us (a
            # pool would only retry in the background until its timeout).
            try:
                probe = psycopg.Connection.connect(settings.conninfo, **settings.kwargs)
            except psycopg.Error as exc:
                raise settings.server.connect_error(exc) from exc
            probe.close()
            setup = settings.setup

            def configure(connection: SyncConnection) -> None:
                if setup:
                    connection.execute(setup)

            pool: ConnectionPool[Any] = ConnectionPool(
                settings.conninfo, kwargs=settings.kwargs, configure=configure,
                min_size=settings.config.min_size, max_size=settings.config.max_size,
                timeout=settings.timeout, name="chathistory-postgres", open=False,
            )
            try:
                pool.open(wait=settings.config.min_size > 0, timeout=settings.connect_timeout)
            except PoolTimeout as exc:
                pool.close()
                raise settings.server.pool_timeout(settings.connect_timeout) from exc
            self._own_pool = self._pool = pool
            return pool

    def close(self) -> None:
        """Close the backend's own pool (a later call opens a new one); app objects stay open."""
        with self._open_lock:
            pool, self._own_pool = self._own_pool, None
            self._pool = self._app_pool
        if pool is not None:
            pool.close()


class _LoopPool:
    """The backend's async pool for one event loop, and the connections it made."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pool: AsyncConnectionPool[Any] | None = None
        self.opening: asyncio.Future[AsyncConnectionPool[Any]] | None = None
        self.connections: WeakSet[AsyncConnection] = WeakSet()
        self.guard: asyncio.Task[None] | None = None

    def guard_until_loop_ends(self, pool: AsyncConnectionPool[Any]) -> None:
        """Close ``pool`` when its loop's tasks are cancelled, as ``asyncio.run`` does at exit.

        A psycopg_pool worker cancelled in the middle of a task (say, opening a
        connection) swallows the cancellation and waits for its next task:
        ``asyncio.run`` would then wait for it forever. Closing the pool sends
        every worker its stop.
        """
        async def close_when_cancelled() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await pool.close()

        self.guard = self.loop.create_task(close_when_cancelled(),
                                           name="chathistory-postgres-pool-guard")

    def release(self) -> None:
        """Close the pool from any thread, whatever its loop is doing.

        A loop that still runs closes it by itself (its guard is cancelled). A
        loop that is closed, or idle and maybe never run again, cannot: the
        sockets are closed here, without it.
        """
        if self.guard is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.guard.cancel)
        if self.loop.is_closed() or not self.loop.is_running():
            for connection in list(self.connections):
                if not connection.closed:
                    connection.pgconn.finish()
            self.connections.clear()
        self.pool = None


class AsyncConnections:
    """Connections for the async twins: an app's async connection or pool, or the backend's."""

    def __init__(self, settings: ConnectionSettings | None, *, server: Server,
                 connection: AsyncConnection | None = None,
                 pool: AsyncConnectionPool[Any] | None = None) -> None:
        self.settings = settings
        self.server = server
        self._connection = connection
        self._connection_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._app_pool = pool
        self._loops: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._lock = threading.Lock()
        self.timeout = settings.timeout if settings else 30.0

    @property
    def available(self) -> bool:
        """Whether async calls have an async source (else they run the sync methods in a thread)."""
        return (self.settings is not None or self._connection is not None
                or self._app_pool is not None)

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]], *,
                  transaction: bool = False) -> T:
        """Async :meth:`SyncConnections.run`."""
        if self._connection is not None:
            return await self._run_on_app_connection(work, transaction)
        pool = self._app_pool or await self._loop_pool()
        connection = await self._checkout(pool)
        try:
            if transaction or not connection.autocommit:
                async with connection.transaction():
                    return await work(connection)
            return await work(connection)
        finally:
            await pool.putconn(connection)

    async def _run_on_app_connection(self, work: Callable[[AsyncConnection], Awaitable[T]],
                                     transaction: bool) -> T:
        connection = self._connection
        assert connection is not None
        loop = asyncio.get_running_loop()
        lock = self._connection_locks.get(loop)
        if lock is None:
            lock = self._connection_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            if connection.closed:
                raise _app_connection_closed(self.server)
            if transaction or not connection.autocommit:
                async with connection.transaction():
                    return await work(connection)
            return await work(connection)

    async def _checkout(self, pool: AsyncConnectionPool[Any]) -> AsyncConnection:
        for _ in range(pool.max_size + 2):
            try:
                connection: AsyncConnection = await pool.getconn(self.timeout)
            except PoolTimeout as exc:
                raise self.server.pool_timeout(self.timeout) from exc
            if not looks_closed(connection):
                return connection
            await connection.close()
            await pool.putconn(connection)
        raise ConnectionLostError(
            f"backend 'postgres': every pooled connection to {self.server.description} "
            "was found closed")

    async def _loop_pool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(loop)
        if entry is not None and entry.pool is not None:
            return entry.pool
        with self._lock:
            entry = self._loops.get(loop)
            if entry is None:
                self._forget_closed_loops()
                entry = self._loops[loop] = _LoopPool(loop)
            opening = entry.opening
            if opening is None:
                opening = entry.opening = loop.create_future()
                opener = True
            else:
                opener = False
        if not opener:
            # Another task of this loop is opening the pool: share its outcome.
            return await asyncio.shield(opening)
        try:
            pool = await self._open(entry)
        except BaseException as exc:
            entry.opening = None
            if isinstance(exc, asyncio.CancelledError):
                opening.cancel()
            else:
                opening.set_exception(exc)
                opening.exception()  # marked retrieved: this task raises it itself
            raise
        entry.pool = pool
        entry.guard_until_loop_ends(pool)
        opening.set_result(pool)
        return pool

    async def _open(self, entry: _LoopPool) -> AsyncConnectionPool[Any]:
        settings = self.settings
        assert settings is not None
        try:
            probe = await psycopg.AsyncConnection.connect(settings.conninfo, **settings.kwargs)
        except psycopg.Error as exc:
            raise settings.server.connect_error(exc) from exc
        await probe.close()
        setup = settings.setup
        connections = entry.connections

        async def configure(connection: AsyncConnection) -> None:
            connections.add(connection)
            if setup:
                await connection.execute(setup)

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.conninfo, kwargs=settings.kwargs, configure=configure,
            min_size=settings.config.min_size, max_size=settings.config.max_size,
            timeout=settings.timeout, name="chathistory-postgres-async", open=False,
        )
        try:
            await pool.open(wait=settings.config.min_size > 0, timeout=settings.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise settings.server.pool_timeout(settings.connect_timeout) from exc
        return pool

    def _forget_closed_loops(self) -> None:
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            self._loops.pop(loop).release()
        for loop in [loop for loop in self._connection_locks if loop.is_closed()]:
            del self._connection_locks[loop]

    async def aclose(self) -> None:
        """Close this loop's pool; release pools of loops that are gone."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only called from a coroutine
            loop = None
        with self._lock:
            entry = self._loops.pop(loop, None) if loop is not None else None
        if entry is not None and entry.pool is not None:
            await entry.pool.close()
            if entry.guard is not None:
                entry.guard.cancel()
        self.close()

    def close(self) -> None:
        """Release every pool (a later call opens a new one); app objects stay open."""
        with self._lock:
            entries = list(self._loops.values())
            self._loops.clear()
            self._connection_locks.clear()
        for entry in entries:
            entry.release()
