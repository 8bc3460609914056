"""A reply that never comes: reads are repeated, an append is not (it may have run).

A Lua loop keeps a private server busy for a moment, so commands sent meanwhile
run late while the backend's short socket timeout gives up on their replies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
import redis
from chathistory_redis import RedisBackend
from chathistory_redis.errors import ReplyLostError

from chathistory import BackendUnavailableError
from chathistory.catalog import ErasureReceipt
from chathistory.testing import numbered_records

if TYPE_CHECKING:
    from conftest import PrivateRedis, StartRedisServer

MakeBackend = Callable[..., RedisBackend]
BUSY = """
local start = redis.call('TIME')
local started = start[1] * 1000000 + start[2]
while true do
  local now = redis.call('TIME')
  if now[1] * 1000000 + now[2] - started > tonumber(ARGV[1]) then return 1 end
end
"""


@pytest.fixture(scope="module")
def server(start_redis_server: StartRedisServer) -> Iterator[PrivateRedis]:
    server = start_redis_server()
    yield server
    server.remove()


@pytest.fixture
def raw(server: PrivateRedis) -> Iterator[redis.Redis]:
    with server.client() as client:
        yield client


@pytest.fixture
def make_backend(server: PrivateRedis) -> Iterator[MakeBackend]:
    built: list[RedisBackend] = []

    def make(**options: object) -> RedisBackend:
        built.append(RedisBackend.from_options(url=server.url, **options))
        return built[-1]

    yield make
    for backend in built:
        backend.clear("s")
        backend.close()


@contextmanager
def busy_server(raw: redis.Redis, seconds: float) -> Iterator[None]:
    """Keep the server busy for ``seconds`` (from another connection) within the block."""
    thread = threading.Thread(target=raw.eval, args=(BUSY, 0, int(seconds * 1_000_000)))
    thread.start()
    probe = redis.Redis(connection_pool=redis.ConnectionPool(
        **{**raw.connection_pool.connection_kwargs, "socket_timeout": 0.02}))
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until a PING goes unanswered: the loop runs
            try:
                probe.ping()
            except redis.TimeoutError:
                break
        else:
            raise AssertionError("the server never got busy")
        yield
    finally:
        probe.close()
        thread.join()


def test_an_append_whose_reply_is_lost_is_not_repeated(make_backend: MakeBackend,
                                                       raw: redis.Redis) -> None:
    backend = make_backend(socket_timeout=0.1, ttl=60)
    # connected, the append's script cached: the append itself is what goes unanswered
    backend.append("warm-up", numbered_records(1))
    with (busy_server(raw, 0.4),
          pytest.raises(BackendUnavailableError, match="not repeated") as caught):
        backend.append("s", numbered_records(2))
    assert "whole batch or none of it" in str(caught.value)
    # Redis ran it once the loop ended: stored exactly once, never twice.
    assert backend.fetch("s") == numbered_records(2)


def test_an_async_append_whose_reply_is_lost_is_not_repeated(make_backend: MakeBackend,
                                                             raw: redis.Redis) -> None:
    backend = make_backend(socket_timeout=0.1)

    async def scenario() -> None:
        await backend.aappend("warm-up", numbered_records(1))
        with (busy_server(raw, 0.4),
              pytest.raises(BackendUnavailableError, match="not repeated")):
            await backend.aappend("s", numbered_records(2))
        assert await backend.afetch("s") == numbered_records(2)
        await backend.aappend("s", numbered_records(1, prefix="after"))  # the pool is sound

    asyncio.run(scenario())
    assert len(backend.fetch("s")) == 3


def test_an_append_that_could_not_connect_is_repeated(make_backend: MakeBackend,
                                                      raw: redis.Redis) -> None:
    backend = make_backend(socket_timeout=0.1)
    connections_before = int(raw.info("stats")["total_connections_received"])
    with busy_server(raw, 0.25):
        # A new connection's handshake goes unanswered: the append was never sent,
        # so it is tried again until the server answers.
        backend.append("s", numbered_records(2))
    assert backend.fetch("s") == numbered_records(2)
    # The first connection timed out in its handshake; a later one stored the batch.
    connections = int(raw.info("stats")["total_connections_received"]) - connections_before
    assert connections >= 1 + 2  # the busy loop's probe, then at least two of the backend


def test_reads_and_clears_are_repeated_until_the_server_answers(make_backend: MakeBackend,
                                                                raw: redis.Redis) -> None:
    backend = make_backend(socket_timeout=0.1)
    backend.append("s", numbered_records(3))
    backend.append("gone", numbered_records(1))
    with busy_server(raw, 0.25):
        assert backend.fetch("s") == numbered_records(3)
    with busy_server(raw, 0.25):
        backend.clear("gone")
    with busy_server(raw, 0.25):
        assert asyncio.run(backend.afetch("s", limit=1)) == numbered_records(3)[2:]
    assert backend.fetch("gone") == []


def test_an_erasure_whose_reply_is_lost_is_not_counted_again(make_backend: MakeBackend,
                                                             raw: redis.Redis) -> None:
    backend = make_backend(socket_timeout=0.1)
    backend.append("s", numbered_records(3))
    backend.erase_sessions(["warm-up"])  # connected, the erasure's script cached
    # Repeated, the erasure would find nothing left and count 0 sessions, 0 messages.
    with busy_server(raw, 0.4), pytest.raises(ReplyLostError, match="not counted"):
        backend.erase_sessions(["s"])
    assert backend.fetch("s") == []  # Redis ran it once the loop ended
    assert backend.erase_sessions(["s"]) == ErasureReceipt(0, 0)
