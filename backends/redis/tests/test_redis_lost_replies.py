"""A reply that never comes: reads are repeated, an append is not (it may have run).

A Lua loop keeps the real server busy for a moment, so commands sent meanwhile
run late while the backend's short socket timeout gives up on their replies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from chathistory_redis import RedisBackend

from chathistory import BackendUnavailableError
from chathistory.testing.samples import numbered_records

MakeBackend = Callable[..., RedisBackend]
BUSY = """
local start = redis.call('TIME')
local started = start[1] * 1000000 + start[2]
while true do
  local now = redis.call('TIME')
  if now[1] * 1000000 + now[2] - started > tonumber(ARGV[1]) then return 1 end
end
"""


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
            time.sleep(0.005)
        else:
            raise AssertionError("the server never got busy")
        yield
    finally:
        probe.close()
        thread.join()


def test_an_append_whose_reply_is_lost_is_not_repeated(make_backend: MakeBackend,
                                                       raw: redis.Redis) -> None:
    backend = make_backend(socket_timeout=0.1, ttl=60)
    backend.fetch("warm-up")  # connected: the append itself is what goes unanswered
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
        await backend.afetch("warm-up")
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
    with busy_server(raw, 0.25):
        # A new connection's handshake goes unanswered: the append was never sent,
        # so it is tried again until the server answers.
        started = time.perf_counter()
        backend.append("s", numbered_records(2))
        assert time.perf_counter() - started > 0.1
    assert backend.fetch("s") == numbered_records(2)


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
