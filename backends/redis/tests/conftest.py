"""The servers the tests use: the shared one under a key prefix of their own, and private ones.

``CHATHISTORY_REDIS_URL`` names the shared server (default
``redis://127.0.0.1:6379/0``). If it cannot be reached the tests that need it
skip, saying why, unless ``CHATHISTORY_REQUIRE_SERVICES=1``: then they fail.
On it, every run writes only under its own random key prefix and deletes its
keys when it ends; it is never stopped, reconfigured or flushed.

Tests that stop, restart, lock up or reconfigure a server (restarts, LOADING,
credentials, cluster, lost replies, connection counts) start a *private*
``redis-server`` with :func:`start_redis_server`: a free local port, a
temporary directory, no persistence; it is stopped and its directory removed
afterwards. They skip when ``redis-server`` is not installed.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from chathistory_redis import RedisBackend
from chathistory_redis.config import server_address
from redis.backoff import NoBackoff
from redis.retry import Retry

from chathistory.testing import wait_until

REDIS_URL = os.environ.get("CHATHISTORY_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_PREFIX = f"chtest-{uuid.uuid4().hex[:12]}"
_numbers = itertools.count()


def connect_raw(url: str = REDIS_URL) -> redis.Redis:
    """A plain redis-py client (no retries) for setting up and inspecting keys."""
    pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return redis.Redis(connection_pool=pool)


def delete_keys(client: redis.Redis, pattern: str) -> None:
    keys = list(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The server's URL, once it answered PING; skips (or fails) the test otherwise."""
    client = connect_raw()
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = (f"Redis at {server_address(REDIS_URL)} is unreachable "
                  f"({type(exc).__name__}: {exc}); set CHATHISTORY_REDIS_URL to test elsewhere")
        if os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (CHATHISTORY_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(reason)
    try:
        yield REDIS_URL
    finally:
        try:
            delete_keys(client, f"{RUN_PREFIX}*")
            # langchain_community's default prefix, as used by the tests that need it
            delete_keys(client, f"message_store:{RUN_PREFIX}*")
            # the sessions indexes of langchain_community-layout prefixes (keys.index_keys)
            delete_keys(client, f"chathistory-index:{{{RUN_PREFIX}*")
        finally:
            client.close()


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """This run's key prefix; every key the tests write starts with it (or is deleted by them)."""
    return RUN_PREFIX


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test server, to look at keys behind the backend's back."""
    client = connect_raw(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(raw: redis.Redis) -> Iterator[str]:
    """A key prefix for this test alone; its keys (``<prefix>:*``) are deleted afterwards."""
    value = f"{RUN_PREFIX}.{next(_numbers)}"
    yield value
    delete_keys(raw, f"{value}:*")


@pytest.fixture
def make_backend(redis_url: str, prefix: str) -> Iterator[Callable[..., RedisBackend]]:
    """Build backends on the test server under this test's prefix; closed at teardown."""
    built: list[RedisBackend] = []

    def make(**options: Any) -> RedisBackend:
        options.setdefault("url", redis_url)
        if options.get("layout") == "langchain_community":
            options.setdefault("key_prefix", f"{prefix}:")
        else:
            options.setdefault("key_prefix", prefix)
        backend = RedisBackend.from_options(**options)
        backend.create_collection()
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()


# Private servers ------------------------------------------------------------------------------

def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(*, with_bus_port: bool) -> int:
    """A free local port; with ``with_bus_port``, port + 10000 (a cluster's bus) is free too."""
    while True:
        port = random.randrange(20000, 30000)
        if _port_is_free(port) and (not with_bus_port or _port_is_free(port + 10000)):
            return port


class PrivateRedis:
    """A ``redis-server`` of the tests' own on 127.0.0.1, in a directory of its own.

    :meth:`stop` and :meth:`start` again (same port, same directory) are a
    restart. With ``--save ""`` it writes nothing to disk unless told to
    (``SAVE``), and then loads that file when it starts again.
    """

    def __init__(self, directory: Path, port: int, options: tuple[str, ...],
                 password: str | None) -> None:
        self.directory, self.port, self.options, self.password = (
            directory, port, options, password)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> redis.Redis:
        """A plain client of this server, as its administrator; it never retries by itself."""
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5,
                           socket_connect_timeout=2, retry=Retry(NoBackoff(), 0), **options)

    def answers(self) -> bool:
        """Whether it takes connections (a server still loading its data does)."""
        with self.client() as client:
            try:
                client.ping()
            except redis.exceptions.BusyLoadingError:
                return True
            except redis.ConnectionError:
                return False
        return True

    def start(self, *options: str) -> None:
        """Start it (again), with ``options`` added for this run; wait until it answers."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--save", "", "--appendonly", "no",
             "--logfile", str(self.directory / "log"), *self.options, *options])
        process = self.process
        wait_until(lambda: self.answers() or process.poll() is not None,
                   f"the private redis-server on port {self.port} answers")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited: "
                               + (self.directory / "log").read_text()[-2000:])

    def stop(self) -> None:
        """Stop it (SIGTERM: it saves nothing) and wait until it has exited."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


StartRedisServer = Callable[..., PrivateRedis]


@pytest.fixture(scope="session")
def start_redis_server(tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[StartRedisServer]:
    """Start a private server: ``start_redis_server(*redis_server_options, password=None,
    cluster=False)``. Every server started is stopped and removed when the session ends, if
    its user has not done so before."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed to start a private Redis server")
    servers: list[PrivateRedis] = []

    def start(*options: str, password: str | None = None, cluster: bool = False
              ) -> PrivateRedis:
        port = _free_port(with_bus_port=cluster)
        directory = tmp_path_factory.mktemp(f"redis-{port}")
        if cluster:
            options = ("--cluster-enabled", "yes",
                       "--cluster-config-file", str(directory / "nodes.conf"), *options)
        if password is not None:
            options = ("--requirepass", password, *options)
        server = PrivateRedis(directory, port, options, password)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.remove()


@pytest.fixture(name="wait_until", scope="session")
def wait_until_fixture() -> Callable[..., None]:
    """``chathistory.testing.wait_until``, as the test modules take it."""
    return wait_until


@pytest.fixture
def redis_server(start_redis_server: StartRedisServer) -> Iterator[PrivateRedis]:
    """A private server for this test alone."""
    server = start_redis_server()
    yield server
    server.remove()
