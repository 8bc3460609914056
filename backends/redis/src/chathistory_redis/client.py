"""The backend's driver: redis-py's own clients and pools (or the application's), run by the core.

Without ``client``, sync calls use a ``redis.Redis`` on one ``redis.BlockingConnectionPool``;
without ``async_client``, async calls a ``redis.asyncio.Redis`` on a blocking pool
per event loop (opened and closed by the core's runner). The pools check a
connection before lending it, PING one idle for ``health_check_interval``, and
start afresh in a forked child. A command takes a connection from the pool and
gives it back, so a failure is known to come before it was sent whole (it did
not run) or after (it may have run: for a :class:`Once` command, ``ReplyLostError``).
Pipelines and scans, which may be repeated, run through the client itself.

With ``cluster``, they are redis-py's ``RedisCluster`` and ``redis.asyncio.RedisCluster``
built from ``url`` (a seed node), the sync one on first use (it connects when built).
A ``RedisCluster`` sends each command to its slot's node by name
(``target_nodes``), so redis-py follows ``MOVED``/``ASK`` but never repeats it.
"""

from __future__ import annotations

import threading
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any

import redis
import redis.asyncio
from redis.driver_info import DriverInfo
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from chathistory import Call, ConfigError, Driver
from chathistory_redis import errors
from chathistory_redis.config import RedisConfig, server_address
from chathistory_redis.keyspace import BODIES, Command, Once, Pipeline, Scan

__all__ = ["RedisDriver"]


def _as_eval(request: Command) -> Command:
    """An ``EVALSHA`` the server answered ``NOSCRIPT`` (it ran nothing), as an ``EVAL``."""
    command = ("EVAL", BODIES[str(request[1])], *request[2:])
    return type(request)(command) if isinstance(request, Once) else command


def _key(command: Command) -> bytes | str | int:
    """The key a command is routed by: a script's first key, or the command's."""
    return command[3] if command[0] in ("EVALSHA", "EVAL") else command[1]


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


def cluster_options(config: RedisConfig) -> dict[str, Any]:
    """:func:`pool_options` for redis-py's ``RedisCluster``, which applies them per node. A
    node's pool has no wait (``pool_timeout``): past ``max_connections``, a call fails with
    ``MaxConnectionsError``, which the core tries again. The sync ``RedisCluster`` passes no
    ``health_check_interval`` to its nodes (redis-py's ``REDIS_ALLOWED_KEYS``)."""
    options = pool_options(config)
    del options["timeout"]
    return options


class RedisDriver(Driver[Any, Any, Any]):
    """Sends the backend's requests: a command (``tuple``), :class:`Once`,
    :class:`Pipeline` or :class:`Scan`.

    Raises:
        ConfigError: ``client`` or ``async_client`` is not a redis-py client of the
            right kind, or one is a cluster and the other not.
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        client, async_client = config.client, config.async_client
        if client is not None and not isinstance(client, redis.Redis | redis.RedisCluster):
            raise ConfigError("backend 'redis': option 'client' must be a redis.Redis or "
                              f"redis.RedisCluster, not {type(client).__name__}")
        if async_client is not None and not isinstance(
                async_client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            raise ConfigError("backend 'redis': option 'async_client' must be a "
                              "redis.asyncio.Redis or redis.asyncio.RedisCluster, not "
                              f"{type(async_client).__name__}")
        clusters = {isinstance(app, redis.RedisCluster | redis.asyncio.RedisCluster)
                    for app in (client, async_client) if app is not None}
        if len(clusters) > 1:
            raise ConfigError("backend 'redis': options 'client' and 'async_client' must both "
                              "be Redis Cluster clients, or neither")
        self.cluster = config.cluster or True in clusters
        """Whether the keys live on several nodes (a script then touches one hash slot)."""
        # An application's sync client without an async one: async calls run the sync
        # path in a worker thread, so both reach the same server.
        self.native_async = client is None or async_client is not None
        url = config.url.get_secret_value()
        self.client: Any = client
        if client is None and not config.cluster:
            self.client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
                url, **pool_options(config)))  # connects on first use
        self._building = threading.Lock()  # the sync RedisCluster, built once
        app = client if client is not None else async_client
        if config.cluster:  # errors name the node, or else the seed
            self.where = f"Redis Cluster at {server_address(url)}"
        elif self.cluster:
            self.where = "Redis Cluster"
        elif app is None:
            self.where = f"Redis at {server_address(url)}"
        else:  # the application's server, not the URL's
            found = app.get_connection_kwargs()
            host, port = found.get("host", "localhost"), found.get("port", 6379)
            self.where = f"Redis at unix:{found['path']}" if "path" in found else (
                f"Redis at {host}:{port}")

    # -- sync ------------------------------------------------------------------------------

    def connection(self, call: Call) -> AbstractContextManager[Any]:
        client = self.client  # each command takes a connection of its own
        if client is None:  # cluster: build the RedisCluster now, connecting to the seed
            with self._building:
                if self.client is None:
                    self.client = redis.RedisCluster.from_url(
                        self.config.url.get_secret_value(), **cluster_options(self.config))
                client = self.client
        return nullcontext(client)

    def send(self, client: Any, request: Any) -> Any:
        try:
            return self._send(client, request)
        except NoScriptError:  # the server has not cached the script: it ran nothing
            return self._send(client, _as_eval(request))

    def _send(self, client: Any, request: Any) -> Any:
        if isinstance(request, Pipeline):
            pipe = client.pipeline(transaction=False)
            for command in request:
                pipe.execute_command(*command)
            return pipe.execute(raise_on_error=True)
        if isinstance(request, Scan):
            return list(client.scan_iter(match=request, count=1000, _type="list"))
        command, once = request, request.lost if isinstance(request, Once) else None
        if self.cluster:
            node = client.get_node_from_key(_key(command))
            with errors.cluster_node(node.name, once):
                return client.execute_command(*command, target_nodes=node)
        pool = client.connection_pool
        connection = pool.get_connection()  # connected and checked: nothing is sent yet
        try:
            connection.send_command(*command)  # one cut short is not run: "not sent"
            with errors.reply_lost(self.where, once):  # redis-py has disconnected it
                return connection.read_response()
        finally:
            pool.release(connection)

    # -- async -----------------------------------------------------------------------------

    async def open_pool(self) -> Any:
        if self.config.async_client is not None:
            return self.config.async_client
        if self.config.cluster:  # connects on first use
            return redis.asyncio.RedisCluster.from_url(self.config.url.get_secret_value(),
                                                       **cluster_options(self.config))
        return redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
            self.config.url.get_secret_value(), **pool_options(self.config)))

    def async_connection(self, client: Any, call: Call) -> AbstractAsyncContextManager[Any]:
        return nullcontext(client)

    async def asend(self, client: Any, request: Any) -> Any:
        try:
            return await self._asend(client, request)
        except NoScriptError:
            return await self._asend(client, _as_eval(request))

    async def _asend(self, client: Any, request: Any) -> Any:
        if isinstance(request, Pipeline):
            pipe = client.pipeline(transaction=False)
            for command in request:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=True)
        if isinstance(request, Scan):
            return [key async for key in client.scan_iter(match=request, count=1000,
                                                          _type="list")]
        command, once = request, request.lost if isinstance(request, Once) else None
        if self.cluster:
            await client.initialize()  # the slot map: loaded once, refreshed on demand
            node = client.get_node_from_key(_key(command))
            with errors.cluster_node(node.name, once):
                return await client.execute_command(*command, target_nodes=node)
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            # Unlike a socket's sendall, an asyncio transport still writes out what it
            # buffered after the sender gave up: a write that timed out may yet arrive.
            with errors.reply_lost(self.where, once, (RedisTimeoutError,)):
                await connection.send_command(*command)
            with errors.reply_lost(self.where, once):
                return await connection.read_response()
        finally:
            await pool.release(connection)

    async def close_pool(self, client: Any) -> None:
        if self.config.cluster:
            await client.aclose()
        elif self.config.async_client is None:
            await client.connection_pool.disconnect()

    # -- errors and closing ----------------------------------------------------------------

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        # A write that may have run raised ReplyLostError already, which is not transient.
        return errors.is_transient(error)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        return errors.translate(error, where=self.where)

    def close(self) -> None:
        if self.config.cluster:  # the next call builds a new one
            with self._building:
                client, self.client = self.client, None
            if client is not None:
                client.close()
        elif self.config.client is None:
            self.client.connection_pool.disconnect()
