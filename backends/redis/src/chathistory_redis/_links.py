"""The wire: one round trip per operation, and what a failure means.

With :mod:`chathistory_redis._connections`, this is where redis-py is used. A
*link* runs the three list operations the backend needs. It takes a connection
(from the backend's own shelf, or from the pool of the application's client),
writes the commands in one go and reads the replies. It therefore knows whether
a lost connection struck before the commands were fully written (nothing ran:
safe to repeat) or after (Redis may have run them), which decides whether an
append may be retried. Clients without a single pool (``RedisCluster``) are
driven through their own command methods (an append with expiry is one Lua
script there), and their failures count as "may have run".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import redis
import redis.asyncio
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chathistory import (
    BackendUnavailableError,
    ChatHistoryError,
    ConfigError,
    PermissionDeniedError,
    aretry_transient,
    retry_transient,
)
from chathistory_redis._connections import (
    AppAsyncPool,
    AppPool,
    AsyncConnections,
    AsyncShelf,
    Connections,
    Shelf,
)
from chathistory_redis.config import RedisConfig

__all__ = [
    "ATTEMPTS",
    "AsyncLink",
    "LinkError",
    "SyncLink",
    "acall",
    "async_client_link",
    "async_pool_link",
    "call",
    "sync_link",
]

T = TypeVar("T")

ATTEMPTS = 4
"""Tries of an operation that is safe to repeat, the first one included."""

Command = tuple[str | bytes | int, ...]
_LOST = (RedisConnectionError, RedisTimeoutError)


class _Connection(Protocol):
    """The part of a redis-py connection that the pool links use (typed here)."""

    def pack_commands(self, commands: Sequence[Command]) -> list[bytes]: ...
    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...
    def read_response(self) -> Any: ...
    def disconnect(self) -> None: ...


class _AsyncConnection(Protocol):
    def pack_commands(self, commands: Sequence[Command]) -> list[bytes]: ...
    async def send_packed_command(self, command: list[bytes], check_health: bool = True
                                  ) -> None: ...
    async def read_response(self) -> Any: ...
    async def disconnect(self, nowait: bool = False) -> None: ...


class LinkError(Exception):
    """The connection failed. ``sent`` is False when the commands surely did not run."""

    def __init__(self, error: RedisError, *, sent: bool) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.sent = sent


class SyncLink(Protocol):
    def push(self, key: bytes, values: Sequence[str], *, left: bool, ttl: int | None) -> None: ...
    def range(self, key: bytes, start: int, stop: int) -> list[bytes | str]: ...
    def delete(self, key: bytes) -> None: ...
    def close(self) -> None: ...


class AsyncLink(Protocol):
    async def push(self, key: bytes, values: Sequence[str], *, left: bool, ttl: int | None
                   ) -> None: ...
    async def range(self, key: bytes, start: int, stop: int) -> list[bytes | str]: ...
    async def delete(self, key: bytes) -> None: ...
    async def close(self) -> None: ...


def _push_commands(key: bytes, values: Sequence[str], left: bool, ttl: int | None
                   ) -> list[Command]:
    push: Command = ("LPUSH" if left else "RPUSH", key, *values)
    if ttl is None:
        return [push]
    # MULTI/EXEC: the push and its expiry run together or not at all, in one round trip.
    return [("MULTI",), push, ("EXPIRE", key, ttl), ("EXEC",)]


def _check_exec(replies: list[Any]) -> None:
    for reply in replies[-1] or ():
        if isinstance(reply, RedisError):
            raise reply


def _is_lost(error: BaseException) -> bool:
    return isinstance(error, _LOST) and not isinstance(error, AuthenticationError)


class PoolLink:
    """Runs commands on connections taken one at a time from ``connections``."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def _run(self, commands: list[Command]) -> list[Any]:
        connections = self._connections
        try:
            taken = connections.take()  # connects if needed; nothing is sent yet
        except RedisError as error:
            if _is_lost(error):
                raise LinkError(error, sent=False) from error
            raise
        connection = cast(_Connection, taken)
        try:
            try:
                connection.send_packed_command(connection.pack_commands(commands),
                                               check_health=False)
            except RedisError as error:
                # A command cut short is never run, and EXEC comes last.
                if _is_lost(error):
                    raise LinkError(error, sent=False) from error
                raise
            try:
                return [connection.read_response() for _ in commands]
            except RedisError as error:
                if _is_lost(error):
                    raise LinkError(error, sent=True) from error
                raise
        except BaseException:
            connection.disconnect()  # it may still hold unread replies
            raise
        finally:
            connections.put(taken)

    def push(self, key: bytes, values: Sequence[str], *, left: bool, ttl: int | None) -> None:
        replies = self._run(_push_commands(key, values, left, ttl))
        if ttl is not None:
            _check_exec(replies)

    def range(self, key: bytes, start: int, stop: int) -> list[bytes | str]:
        return cast(list[bytes | str], self._run([("LRANGE", key, start, stop)])[0])

    def delete(self, key: bytes) -> None:
        self._run([("DEL", key)])

    def close(self) -> None:
        self._connections.close()


# For clients without one pool, the push and its expiry as one script: atomic and
# one round trip on any client (redis-py 8.1's async cluster transactions run their
# commands on another event loop). The values go 1000 at a time, as unpack() takes
# only a few thousand.
PUSH_AND_EXPIRE = """
for first = 3, #ARGV, 1000 do
  redis.call(ARGV[1], KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


class ClientLink:
    """Runs commands through a client's own methods (for clients without one pool)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _guard(self, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except RedisError as error:
            if _is_lost(error):
                raise LinkError(error, sent=True) from error
            raise

    def push(self, key: bytes, values: Sequence[str], *, left: bool, ttl: int | None) -> None:
        verb = "LPUSH" if left else "RPUSH"
        if ttl is None:
            self._guard(lambda: self._client.execute_command(verb, key, *values))
        else:
            self._guard(lambda: self._client.eval(PUSH_AND_EXPIRE, 1, key, verb, ttl, *values))

    def range(self, key: bytes, start: int, stop: int) -> list[bytes | str]:
        return cast(list[bytes | str], self._guard(lambda: self._client.lrange(key, start, stop)))

    def delete(self, key: bytes) -> None:
        self._guard(lambda: self._client.delete(key))

    def close(self) -> None:
        """The application's client stays open."""


class AsyncPoolLink:
    """Async :class:`PoolLink` (its connections belong to one event loop)."""

    def __init__(self, connections: AsyncConnections) -> None:
        self._connections = connections

    async def _run(self, commands: list[Command]) -> list[Any]:
        connections = self._connections
        try:
            connection = cast(_AsyncConnection, await connections.take())
        except RedisError as error:
            if _is_lost(error):
                raise LinkError(error, sent=False) from error
            raise
        try:
            try:
                await connection.send_packed_command(connection.pack_commands(commands),
                                                     check_health=False)
            except RedisError as error:
                if _is_lost(error):
                    raise LinkError(error, sent=False) from error
                raise
            try:
                return [await connection.read_response() for _ in commands]
            except RedisError as error:
                if _is_lost(error):
                    raise LinkError(error, sent=True) from error
                raise
        except BaseException:
            # Also on cancellation: a connection with unread replies must not be reused.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await connections.put(connection)

    async def push(self, key: bytes, values: Sequence[str], *, left: bool, ttl: int | None
                   ) -> None:
        replies = await self._run(_push_commands(key, values, left, ttl))
        if ttl is not None:
            _check_exec(replies)

    async def range(self, key: bytes, start: int, stop: int) -> list[bytes | str]:
        return cast(list[bytes | str], (await self._run([("LRANGE", key, start, stop)]))[0])

    async def delete(self, key: bytes) -> None:
        await self._run([("DEL", key)])

    async def close(self) -> None:
        await self._connections.close()


class AsyncClientLink:
    """Async :class:`ClientLink`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def _guard(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except RedisError as error:
            if _is_lost(error):
                raise LinkError(error, sent=True) from error
            raise

    async def push(self, key: bytes, values: Sequence[str], *, left: bool, ttl: int | None
                   ) -> None:
        verb = "LPUSH" if left else "RPUSH"
        if ttl is None:
            await self._guard(lambda: self._client.execute_command(verb, key, *values))
        else:
            await self._guard(
                lambda: self._client.eval(PUSH_AND_EXPIRE, 1, key, verb, ttl, *values))

    async def range(self, key: bytes, start: int, stop: int) -> list[bytes | str]:
        return cast(list[bytes | str],
                    await self._guard(lambda: self._client.lrange(key, start, stop)))

    async def delete(self, key: bytes) -> None:
        await self._guard(lambda: self._client.delete(key))

    async def close(self) -> None:
        """The application's client stays open."""


def _pool_options(config: RedisConfig) -> dict[str, Any]:
    return {
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.socket_connect_timeout,
        "decode_responses": False,
    }


def sync_link(config: RedisConfig) -> SyncLink:
    """The link of the sync methods: the application's ``client``, or connections of our own."""
    client = config.client
    if client is None:
        url = config.url.get_secret_value()
        return PoolLink(Shelf(redis.ConnectionPool.from_url(url, **_pool_options(config))))
    if isinstance(client, redis.Redis) and isinstance(client.connection_pool,
                                                       redis.ConnectionPool):
        return PoolLink(AppPool(client.connection_pool))
    if isinstance(client, redis.RedisCluster):
        return ClientLink(client)
    raise ConfigError(
        f"backend 'redis': option 'client' must be a redis.Redis or redis.RedisCluster, "
        f"not {type(client).__name__}"
    )


def async_pool_link(config: RedisConfig) -> AsyncLink:
    """Connections of our own for the running event loop (an asyncio connection serves one)."""
    url = config.url.get_secret_value()
    pool = redis.asyncio.ConnectionPool.from_url(url, **_pool_options(config))
    return AsyncPoolLink(AsyncShelf(pool))


def async_client_link(client: Any) -> AsyncLink:
    """The link of the application's ``async_client``."""
    if isinstance(client, redis.asyncio.Redis) and isinstance(client.connection_pool,
                                                               redis.asyncio.ConnectionPool):
        return AsyncPoolLink(AppAsyncPool(client.connection_pool))
    if isinstance(client, redis.asyncio.RedisCluster):
        return AsyncClientLink(client)
    raise ConfigError(
        "backend 'redis': option 'async_client' must be a redis.asyncio.Redis or "
        f"redis.asyncio.RedisCluster, not {type(client).__name__}"
    )


def check_clients(config: RedisConfig) -> None:
    """Raise :class:`ConfigError` at once for a ``client``/``async_client`` of the wrong kind."""
    if config.client is not None:
        sync_link(config)
    if config.async_client is not None:
        async_client_link(config.async_client)


# Errors -------------------------------------------------------------------------------------

def _translate(error: BaseException, operation: str, address: str) -> ChatHistoryError:
    where = f"backend 'redis' ({address})"
    if isinstance(error, LinkError):
        if error.sent:
            return BackendUnavailableError(
                f"{where}: the connection was lost after the {operation} was sent, so it was "
                f"not repeated; Redis stored the whole batch or none of it: {error}"
            )
        return BackendUnavailableError(f"{where} is unavailable ({operation}): {error}")
    if isinstance(error, (AuthenticationError, NoPermissionError)):
        return PermissionDeniedError(f"{where} refused the credentials ({operation}): {error}")
    if isinstance(error, ResponseError):
        return ChatHistoryError(f"{where} refused the {operation}: {error}")
    return ChatHistoryError(f"{where}: {operation} failed: {type(error).__name__}: {error}")


def _exhausted(error: BackendUnavailableError, operation: str, address: str
               ) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend 'redis' ({address}) is unavailable ({operation}, {ATTEMPTS} attempts): "
        f"{error.__cause__}"
    )


def call(operation: str, attempt: Callable[[], T], *, address: str, idempotent: bool) -> T:
    """Run ``attempt``; repeat it on a lost connection when that is safe; translate errors.

    An operation is repeated when it is idempotent (a read, a DEL), or when the
    connection failed before its commands were written. The first try runs
    without the retry machinery, which is all an ordinary call ever needs.
    """
    def repeatable(error: BaseException) -> bool:
        return isinstance(error, LinkError) and (idempotent or not error.sent)

    try:
        return attempt()
    except (LinkError, RedisError) as error:
        if not repeatable(error):
            raise _translate(error, operation, address) from error
    try:
        return retry_transient(attempt, backend="redis", is_transient=repeatable,
                               attempts=ATTEMPTS - 1)
    except BackendUnavailableError as error:
        raise _exhausted(error, operation, address) from error.__cause__
    except (LinkError, RedisError) as error:
        raise _translate(error, operation, address) from error


async def acall(operation: str, attempt: Callable[[], Awaitable[T]], *, address: str,
                idempotent: bool) -> T:
    """Async :func:`call`."""
    def repeatable(error: BaseException) -> bool:
        return isinstance(error, LinkError) and (idempotent or not error.sent)

    try:
        return await attempt()
    except (LinkError, RedisError) as error:
        if not repeatable(error):
            raise _translate(error, operation, address) from error
    try:
        return await aretry_transient(attempt, backend="redis", is_transient=repeatable,
                                      attempts=ATTEMPTS - 1)
    except BackendUnavailableError as error:
        raise _exhausted(error, operation, address) from error.__cause__
    except (LinkError, RedisError) as error:
        raise _translate(error, operation, address) from error
