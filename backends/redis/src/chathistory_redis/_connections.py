"""Where a link gets a connection for a command: the backend's own shelf, or an app's pool.

The backend keeps the connections it makes on a *shelf* of idle ones, instead
of in a ``redis.ConnectionPool``. redis-py 8's pool spends about 25 µs of every
command on metrics counters, an event dispatch and a readiness probe of three
system calls; a chat turn is two commands that each wait one round trip, so
that was an eighth of a turn. Taking a connection from a shelf is a list pop
and one ``poll(2)``. A pool that an application lends (its client's) stays
the application's: it is used through its own ``get_connection`` and
``release``.

Connections come back to where they were taken from even after a failure: the
link disconnects a connection whose replies it could not read, and the next
take connects it again.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from typing import Any, Protocol, cast

import redis
import redis.asyncio
from redis.exceptions import MaxConnectionsError, RedisError

__all__ = [
    "AppAsyncPool",
    "AppPool",
    "AsyncConnections",
    "AsyncShelf",
    "Connections",
    "Shelf",
]


class Connections(Protocol):
    def take(self) -> Any:
        """A connected connection; a ``RedisError`` if none can be had."""

    def put(self, connection: Any) -> None: ...
    def close(self) -> None: ...


class AsyncConnections(Protocol):
    async def take(self) -> Any:
        """A connected connection; a ``RedisError`` if none can be had."""

    async def put(self, connection: Any) -> None: ...
    async def close(self) -> None: ...


class _AsyncPool(Protocol):  # redis.asyncio.ConnectionPool, typed
    async def get_connection(self) -> Any: ...
    async def release(self, connection: Any) -> None: ...


def _readable(sock: socket.socket) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # Windows has no poll()


class _Shelf:
    """Idle connections of the backend's own, reused most recently used first.

    An idle connection never has a reply waiting (the link reads every reply or
    disconnects), so one with something to read was closed by the server (a
    restart, an idle timeout) and is reconnected before use. A
    ``max_connections`` in the URL caps how many connections are made, as in
    redis-py's pool.
    """

    def __init__(self, pool: redis.ConnectionPool | redis.asyncio.ConnectionPool) -> None:
        # The pool only parsed the URL: its connection class and arguments make ours.
        self._pool = pool
        self._idle: list[Any] = []
        self._made = 0
        self._lock = threading.Lock()

    def _new(self) -> Any:
        with self._lock:
            if self._made >= self._pool.max_connections:
                raise MaxConnectionsError("Too many connections")
            self._made += 1
        return self._pool.connection_class(**self._pool.connection_kwargs)


class Shelf(_Shelf):
    """The sync connections. After a fork, the child leaves the parent's alone."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        super().__init__(pool)
        self._pid = os.getpid()

    def take(self) -> Any:
        if self._pid != os.getpid():
            with self._lock:
                self._idle, self._made, self._pid = [], 0, os.getpid()
        try:
            connection = self._idle.pop()  # atomic: threads share the shelf without a lock
        except IndexError:
            connection = self._new()
        else:
            sock = connection._sock
            if sock is not None and _readable(sock):
                connection.disconnect()
        try:
            connection.connect()  # nothing to do when connected
        except BaseException:
            self._idle.append(connection)  # still counted as made: kept for the next try
            raise
        return connection

    def put(self, connection: Any) -> None:
        self._idle.append(connection)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.disconnect()


class AsyncShelf(_Shelf):
    """One event loop's connections."""

    async def take(self) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._new()
        else:
            # can_read() looks at what the event loop has already buffered (bytes
            # nobody asked for, or the server's close): no system call.
            if connection.is_connected:
                try:
                    stale = await connection.can_read()
                except (RedisError, OSError):
                    stale = True
                if stale:
                    await connection.disconnect(nowait=True)
        try:
            await connection.connect()
        except BaseException:
            self._idle.append(connection)
            raise
        return connection

    async def put(self, connection: Any) -> None:
        self._idle.append(connection)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


class AppPool:
    """An application's ``redis.ConnectionPool``: used as lent, never closed."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool

    def take(self) -> Any:
        return self._pool.get_connection()

    def put(self, connection: Any) -> None:
        self._pool.release(connection)

    def close(self) -> None:
        """The application's pool stays open."""


class AppAsyncPool:
    """An application's ``redis.asyncio.ConnectionPool``: used as lent, never closed."""

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._pool = cast(_AsyncPool, pool)

    async def take(self) -> Any:
        return await self._pool.get_connection()

    async def put(self, connection: Any) -> None:
        await self._pool.release(connection)

    async def close(self) -> None:
        """The application's pool stays open."""
