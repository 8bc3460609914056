"""The conformance suite, in each layout, with and without ttl, and on an application's client."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from chathistory_redis import RedisBackend

from chathistory.driver import AsyncOperationMethod
from chathistory.testing import BackendContract

MakeBackend = Callable[..., RedisBackend]
Snapshot = list[tuple[bytes, bytes | None, bool]]


class RedisContract(BackendContract):
    """The suite, with reads watched on the keys under the test's prefix and its index."""

    @pytest.fixture
    def store_snapshot(self, raw: redis.Redis, prefix: str) -> Callable[[], Snapshot]:
        def keys() -> Snapshot:
            found = [*raw.scan_iter(match=f"{prefix}*", count=1000),
                     *raw.scan_iter(match=f"chathistory-index:{{{prefix}*", count=1000)]
            return sorted((key, raw.dump(key), raw.ttl(key) >= 0) for key in found)

        return keys

    @pytest.fixture
    def uncreated_backend(self, backend: RedisBackend, prefix: str) -> RedisBackend:
        """``backend``'s options under a key prefix nothing was written to."""
        return RedisBackend(backend.config.model_copy(update={"key_prefix": f"{prefix}-new:"}))


class TestRedisBackend(RedisContract):
    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> RedisBackend:
        return make_backend()


class TestRedisBackendWithTtl(RedisContract):
    """Appends are MULTI/RPUSH/EXPIRE/EXEC here."""

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> RedisBackend:
        return make_backend(ttl=3600)


class TestRedisBackendLangchainLayout(RedisContract):
    """RedisChatMessageHistory's keys and newest-first order, read and written in place."""

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> RedisBackend:
        return make_backend(layout="langchain_community", ttl=3600)


class TestRedisBackendOnApplicationClient(RedisContract):
    """An application's own redis.Redis; the async twins then run it in a worker thread."""

    @pytest.fixture
    def backend(self, make_backend: MakeBackend, redis_url: str) -> Iterator[RedisBackend]:
        pool = redis.ConnectionPool.from_url(redis_url, decode_responses=True)
        client = redis.Redis(connection_pool=pool)
        yield make_backend(client=client, url="redis://unused:1")
        client.close()
        pool.disconnect()


def test_async_twins_are_native(make_backend: MakeBackend) -> None:
    for name in ("acreate_collection", "aappend", "afetch", "aclear"):
        # the operation's own twin, run by the core on redis.asyncio, not a worker thread
        assert isinstance(vars(RedisBackend)[name], AsyncOperationMethod), name
    assert make_backend().driver.native_async
