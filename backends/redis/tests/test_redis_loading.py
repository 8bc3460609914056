"""A server still loading its data after a restart answers LOADING: nothing ran, so it is retried.

How a private server is made to load slowly, reliably: it is given 5,000 keys,
``SAVE``s them, and is restarted with two of redis-server's hidden debugging
options: ``key-load-delay 2000`` (it sleeps 2 ms after each key it loads, so
loading takes about 10 s) and ``loading-process-events-interval-bytes 1024``
(it serves clients after every kilobyte it loads, answering ``LOADING`` to what
it cannot run yet). ``INFO`` is allowed while loading: ``INFO persistence``
says ``loading:1``, and ``INFO errorstats`` counts the ``LOADING`` replies, so
a test knows that the backend was refused. ``CONFIG SET key-load-delay 0``
then lets the rest load at once. Only these private servers are touched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
from chathistory_redis import RedisBackend

from chathistory import BackendUnavailableError
from chathistory.testing import numbered_records

if TYPE_CHECKING:
    from conftest import PrivateRedis, StartRedisServer

WaitUntil = Callable[..., None]
SLOW_LOADING = ("--key-load-delay", "2000", "--loading-process-events-interval-bytes", "1024")


@pytest.fixture
def server(start_redis_server: StartRedisServer) -> Iterator[PrivateRedis]:
    """A private server with 5,000 keys saved to its disk, to load again when it restarts."""
    server = start_redis_server()
    with server.client() as admin:
        pipe = admin.pipeline(transaction=False)
        for number in range(5000):
            pipe.set(f"filler-{number}", "x" * 100)
        pipe.execute()
        admin.save()
    yield server
    server.remove()


def _loading_refusals(admin: redis.Redis) -> int:
    return int(admin.info("errorstats").get("errorstat_LOADING", {}).get("count", 0))


def _restart_loading_slowly(server: PrivateRedis, wait_until: WaitUntil) -> redis.Redis:
    server.stop()
    server.start(*SLOW_LOADING)
    admin = server.client()
    wait_until(lambda: admin.info("persistence")["loading"] == 1, "the server is loading")
    return admin


@pytest.mark.parametrize("native_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("ttl", [None, 60])
def test_an_append_refused_with_loading_is_retried_and_stored_once(
    server: PrivateRedis, wait_until: WaitUntil, native_async: bool, ttl: int | None
) -> None:
    # No health-check PING: what Redis refuses is the append itself.
    backend = RedisBackend.from_options(url=server.url, ttl=ttl, health_check_interval=0)
    backend.fetch("warm-up")  # a pooled connection to the server that is about to restart
    admin = _restart_loading_slowly(server, wait_until)
    outcome: list[BaseException | None] = []

    def append() -> None:
        try:
            if native_async:
                asyncio.run(backend.aappend("s", numbered_records(2)))
            else:
                backend.append("s", numbered_records(2))
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(None)

    refused_before = _loading_refusals(admin)  # the PING that saw the server up was one
    writer = threading.Thread(target=append)
    writer.start()
    try:
        wait_until(lambda: _loading_refusals(admin) > refused_before or outcome,
                   "the append is refused with LOADING")
        assert not outcome, f"the append ended before the server refused it: {outcome}"
    finally:
        admin.config_set("key-load-delay", 0)  # the rest loads at once, while it retries
        writer.join(30)
    assert outcome == [None]
    wait_until(lambda: admin.info("persistence")["loading"] == 0, "the server has loaded")
    assert backend.fetch("s") == numbered_records(2)  # stored, and once
    # the session, the sessions index's two sets, and the catalog's creation times
    assert admin.dbsize() == 5000 + 1 + 3
    admin.close()
    backend.close()


def test_a_server_that_keeps_loading_is_unavailable_and_nothing_is_stored(
    server: PrivateRedis, wait_until: WaitUntil
) -> None:
    backend = RedisBackend.from_options(url=server.url, ttl=60)
    backend.fetch("warm-up")
    admin = _restart_loading_slowly(server, wait_until)
    refused_before = _loading_refusals(admin)
    try:
        for call in (lambda: backend.append("s", numbered_records(2)),
                     lambda: asyncio.run(backend.aappend("s", numbered_records(2))),
                     lambda: backend.fetch("s")):
            with pytest.raises(BackendUnavailableError, match="after 4 attempts") as caught:
                call()
            assert "LOADING" in str(caught.value) or "loading" in str(caught.value)
            assert "not repeated" not in str(caught.value)  # refused, so not "may have run"
        assert _loading_refusals(admin) >= refused_before + 3 * 4
    finally:
        admin.config_set("key-load-delay", 0)
    wait_until(lambda: admin.info("persistence")["loading"] == 0, "the server has loaded")
    assert backend.fetch("s") == []
    admin.close()
    backend.close()
