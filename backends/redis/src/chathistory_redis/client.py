"""The backend's connections: redis-py's own pools, built from the options, or the app's clients.

Without ``client``, the sync methods use one ``redis.BlockingConnectionPool``;
without ``async_client``, the async methods use one
``redis.asyncio.BlockingConnectionPool`` per event loop (an asyncio connection
belongs to one loop), closed when that loop shuts down. A blocking pool makes a
burst of calls wait for a free connection instead of failing. The pools do the
rest: they check a connection before lending it (one the server closed is
reconnected), PING one idle for ``health_check_interval``, and start afresh in a
forked child.

Every operation is one command (or, for the optional capabilities, a pipeline of
commands that may be repeated: reads, and deletes checked in a script). It is
run on a connection taken from the pool for it, so that a failure is known to
come before the command was sent whole (taking or connecting, sending: it did
not run) or after (reading the reply: it may have run). An async write that
timed out while sending counts as "may have run" too, since asyncio still
flushes what it had buffered. A ``RedisCluster`` has no single pool and runs
the command itself; its failures
all count as "may have run".

The optional capabilities also need :meth:`Commands.pipeline` (commands sent
together and answered in order, one round trip on one server; a cluster's
pipeline routes each to its node) and :meth:`Commands.scan` (the keys matching a
pattern, over every node of a cluster).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import redis
import redis.asyncio
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from chathistory import ConfigError
from chathistory_redis.config import RedisConfig
from chathistory_redis.errors import ReplyLostError, may_have_run, name_node, never_sent
from chathistory_redis.scripts import BODIES

__all__ = ["AsyncCommands", "Clients", "Command", "Commands", "acall", "call"]

Command = tuple[bytes | str | int, ...]
_LOST = (RedisConnectionError, RedisTimeoutError)


SCAN_COUNT = 1000


class Commands(Protocol):
    cluster: bool
    """Whether the keys may live on several nodes (a script then touches one hash slot)."""

    def run(self, command: Command, *, write: bool) -> Any:
        """Run ``command``; a ``write`` whose reply is lost raises :class:`ReplyLostError`."""

    def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Run commands that may be repeated, together; their replies, in order.

        Every reply is read; the first error reply is then raised.
        """

    def scan(self, pattern: bytes) -> list[bytes]:
        """Every list key matching ``pattern`` (``SCAN ... TYPE list``, on every node)."""

    def close(self) -> None: ...


class AsyncCommands(Protocol):
    cluster: bool

    async def run(self, command: Command, *, write: bool) -> Any: ...
    async def pipeline(self, commands: Sequence[Command]) -> list[Any]: ...
    async def scan(self, pattern: bytes) -> list[bytes]: ...
    async def close(self) -> None: ...


def _as_eval(command: Command) -> Command:
    return ("EVAL", BODIES[str(command[1])], *command[2:])


def call(commands: Commands, command: Command, *, write: bool) -> Any:
    """:meth:`Commands.run`; an ``EVALSHA`` of a script the server has not cached (it ran
    nothing: ``NOSCRIPT``) is sent again as ``EVAL``, which caches it."""
    try:
        return commands.run(command, write=write)
    except NoScriptError:
        if command[0] != "EVALSHA":
            raise
    return commands.run(_as_eval(command), write=write)


async def acall(commands: AsyncCommands, command: Command, *, write: bool) -> Any:
    """:func:`call`, async."""
    try:
        return await commands.run(command, write=write)
    except NoScriptError:
        if command[0] != "EVALSHA":
            raise
    return await commands.run(_as_eval(command), write=write)


def _scan_command(cursor: int | bytes, pattern: bytes) -> Command:
    return ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, "TYPE", "list")


def _replies(replies: list[Any], error: ResponseError | None) -> list[Any]:
    if error is not None:
        raise error
    return replies


class PoolCommands:
    """Commands on connections of a ``redis.ConnectionPool`` (or a subclass), one at a time."""

    cluster = False

    def __init__(self, pool: redis.ConnectionPool, address: str, *, owned: bool) -> None:
        self.pool, self.address, self.owned = pool, address, owned

    def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        pool = self.pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(
                connection.pack_commands(commands))  # type: ignore[no-untyped-call]
            replies: list[Any] = []
            error: ResponseError | None = None
            for _ in commands:  # every reply is read, so the connection stays in step
                try:
                    replies.append(connection.read_response())
                except ResponseError as refused:
                    error = error or refused
                    replies.append(refused)
            return _replies(replies, error)
        finally:
            pool.release(connection)

    def scan(self, pattern: bytes) -> list[bytes]:
        keys: list[bytes] = []
        cursor: int | bytes = 0
        while True:
            cursor, found = self.run(_scan_command(cursor, pattern), write=False)
            keys.extend(found)
            if int(cursor) == 0:
                return keys

    def run(self, command: Command, *, write: bool) -> Any:
        pool = self.pool
        connection = pool.get_connection()  # connected and checked: nothing is sent yet
        try:
            # A command cut short is not run: failing to send it is "not sent".
            connection.send_command(*command)  # type: ignore[no-untyped-call]
            try:
                return connection.read_response()
            except _LOST as error:  # redis-py has disconnected it
                if write and may_have_run(error):
                    raise ReplyLostError(self.address, error) from error
                raise
        finally:
            pool.release(connection)

    def close(self) -> None:
        if self.owned:
            self.pool.disconnect()


class AsyncPoolCommands:
    """:class:`PoolCommands` on a ``redis.asyncio.ConnectionPool``."""

    cluster = False

    def __init__(self, pool: redis.asyncio.ConnectionPool, address: str, *, owned: bool
                 ) -> None:
        self.pool, self.address, self.owned = pool, address, owned

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        pool = self.pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            error: ResponseError | None = None
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as refused:
                    error = error or refused
                    replies.append(refused)
            return _replies(replies, error)
        finally:
            await pool.release(connection)

    async def scan(self, pattern: bytes) -> list[bytes]:
        keys: list[bytes] = []
        cursor: int | bytes = 0
        while True:
            cursor, found = await self.run(_scan_command(cursor, pattern), write=False)
            keys.extend(found)
            if int(cursor) == 0:
                return keys

    async def run(self, command: Command, *, write: bool) -> Any:
        pool = self.pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            try:
                await connection.send_command(*command)
            except RedisTimeoutError as error:
                # Unlike a socket's sendall, an asyncio transport still writes out what it
                # buffered after the sender gave up: a write that timed out may yet arrive.
                if write:
                    raise ReplyLostError(self.address, error) from error
                raise
            try:
                return await connection.read_response()
            except _LOST as error:
                if write and may_have_run(error):
                    raise ReplyLostError(self.address, error) from error
                raise
        finally:
            await pool.release(connection)

    async def close(self) -> None:
        if self.owned:
            await self.pool.disconnect()


def _key(command: Command) -> bytes | str | int:
    """The key a command is routed by: a script's first key, or the command's."""
    return command[3] if command[0] in ("EVALSHA", "EVAL") else command[1]


def _check_cluster_failure(error: RedisError, node: str, *, write: bool) -> None:
    """Raise :class:`ReplyLostError` for a write whose reply was lost; else note the node
    on ``error`` (see :func:`~chathistory_redis.errors.translate`), to be raised as it is."""
    if write and isinstance(error, _LOST) and may_have_run(error) and not never_sent(error):
        raise ReplyLostError(node, error) from error
    name_node(error, node)


class ClusterCommands:
    """Commands through an application's ``redis.RedisCluster``, which routes them.

    Each command is sent to the node of its key's slot, named: given a node,
    redis-py runs it once (following ``MOVED`` and ``ASK``) instead of repeating
    it after a lost connection, which would store an append twice. The one
    retry path is then ``chathistory.retry_transient``, which knows what may be
    repeated.
    """

    cluster = True

    def __init__(self, client: redis.RedisCluster, address: str) -> None:
        self.client, self.address = client, address

    def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=True))

    def scan(self, pattern: bytes) -> list[bytes]:
        return list(self.client.scan_iter(match=pattern, count=SCAN_COUNT, _type="list"))

    def run(self, command: Command, *, write: bool) -> Any:
        client = self.client
        node = client.get_node_from_key(_key(command))  # type: ignore[no-untyped-call]
        try:
            return client.execute_command(  # type: ignore[no-untyped-call]
                *command, target_nodes=node)
        except RedisError as error:
            _check_cluster_failure(error, node.name, write=write)
            raise

    def close(self) -> None:
        """The application's client stays open."""


class AsyncClusterCommands:
    """:class:`ClusterCommands` through a ``redis.asyncio.RedisCluster``."""

    cluster = True

    def __init__(self, client: redis.asyncio.RedisCluster, address: str) -> None:
        self.client, self.address = client, address

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=True)

    async def scan(self, pattern: bytes) -> list[bytes]:
        return [key async for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT,
                                                           _type="list")]

    async def run(self, command: Command, *, write: bool) -> Any:
        client = self.client
        # The slot map, loaded on first use and refreshed when an error asked for it.
        await client.initialize()
        node = client.get_node_from_key(_key(command))  # type: ignore[arg-type]
        assert node is not None  # only a replica may be missing
        try:
            return await client.execute_command(*command, target_nodes=node)
        except RedisError as error:
            _check_cluster_failure(error, node.name, write=write)
            raise

    async def close(self) -> None:
        """The application's client stays open."""


def pool_options(config: RedisConfig) -> dict[str, Any]:
    """redis-py's pool and connection options from ours (the URL's query options win)."""
    return {
        "max_connections": config.max_connections,
        "timeout": config.pool_timeout,
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.socket_connect_timeout,
        "health_check_interval": config.health_check_interval,
        "decode_responses": False,
        # Given, the version is not looked up in the package metadata (files on disk)
        # each time a connection is made, which would block an event loop.
        "driver_info": DriverInfo(lib_version=redis.__version__),
        # redis-py 8 defaults to "auto", which makes its pools skip the check that a
        # connection the server closed is replaced before use, even where the server
        # sends no maintenance notifications (Redis itself does not).
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def _sync_commands(config: RedisConfig) -> Commands:
    client, address = config.client, config.address
    if client is None:
        pool = redis.BlockingConnectionPool.from_url(config.url.get_secret_value(),
                                                     **pool_options(config))
        return PoolCommands(pool, address, owned=True)
    if isinstance(client, redis.Redis) and isinstance(client.connection_pool,
                                                       redis.ConnectionPool):
        return PoolCommands(client.connection_pool, address, owned=False)
    if isinstance(client, redis.RedisCluster):
        return ClusterCommands(client, address)
    raise ConfigError("backend 'redis': option 'client' must be a redis.Redis or "
                      f"redis.RedisCluster, not {type(client).__name__}")


def _app_async_commands(client: Any, address: str) -> AsyncCommands:
    if isinstance(client, redis.asyncio.Redis) and isinstance(client.connection_pool,
                                                               redis.asyncio.ConnectionPool):
        return AsyncPoolCommands(client.connection_pool, address, owned=False)
    if isinstance(client, redis.asyncio.RedisCluster):
        return AsyncClusterCommands(client, address)
    raise ConfigError("backend 'redis': option 'async_client' must be a redis.asyncio.Redis "
                      f"or redis.asyncio.RedisCluster, not {type(client).__name__}")


class Clients:
    """Where the backend's commands run: ``sync``, and :meth:`for_running_loop` for async.

    Raises:
        ConfigError: ``client`` or ``async_client`` is not a redis-py client of the right kind.
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.sync = _sync_commands(config)  # a pool connects on first use, not here
        self._app_async: AsyncCommands | None = None
        if config.async_client is not None:
            self._app_async = _app_async_commands(config.async_client, config.address)
        self._lock = threading.Lock()
        # Each event loop's pool, with the suspended generator that closes it at loop shutdown.
        self._loops: dict[asyncio.AbstractEventLoop,
                          tuple[AsyncCommands, AsyncGenerator[None, None]]] = {}

    async def for_running_loop(self) -> AsyncCommands:
        """The application's ``async_client``, or the running event loop's own pool."""
        if self._app_async is not None:
            return self._app_async
        loop = asyncio.get_running_loop()
        entry = self._loops.get(loop)
        if entry is not None:
            return entry[0]
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.config.url.get_secret_value(), **pool_options(self.config))
        commands = AsyncPoolCommands(pool, self.config.address, owned=True)
        closer = self._close_with(loop, commands)
        with self._lock:
            for closed in [old for old in self._loops if old.is_closed()]:
                del self._loops[closed]
            self._loops[loop] = (commands, closer)
        # Started, the generator is one the loop closes at shutdown (asyncio.run and
        # asyncio.Runner call loop.shutdown_asyncgens()), which closes the pool on its loop.
        await closer.__anext__()
        return commands

    async def _close_with(self, loop: asyncio.AbstractEventLoop, commands: AsyncCommands
                          ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                if self._loops.get(loop, (None,))[0] is commands:
                    del self._loops[loop]
            await commands.close()

    def close(self) -> None:
        """Close the pools made here (the application's clients stay open); reusable after."""
        self.sync.close()
        with self._lock:
            loops, self._loops = self._loops, {}
        for loop, (_, closer) in loops.items():
            if loop.is_running() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(closer.aclose(), loop)
            # A stopped loop's pool cannot be closed any more; its sockets go with it.

    async def aclose(self) -> None:
        """Close the running loop's pool now, and the others as :meth:`close` does."""
        with self._lock:
            entry = self._loops.pop(asyncio.get_running_loop(), None)
        try:
            if entry is not None:
                await entry[1].aclose()
        finally:
            self.close()
