"""The Redis server the tests run against, and a key prefix of their own.

``CHATHISTORY_REDIS_URL`` names the server (default ``redis://127.0.0.1:6379/0``).
If it cannot be reached the tests skip, saying why, unless
``CHATHISTORY_REQUIRE_SERVICES=1``: then they fail. Every run writes under its
own random key prefix and deletes its keys when it ends.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from chathistory_redis import RedisBackend
from chathistory_redis.config import server_address

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
