"""The backend's own connections: one the server closed is replaced, a fork makes its own.

Each backend here names its connections (``client_name`` in the URL), so the
tests can find them in ``CLIENT LIST`` and kill them from another client.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
import uuid
from collections.abc import Callable

import pytest
import redis
import redis.asyncio
from chathistory_redis import RedisBackend
from chathistory_redis._connections import AsyncShelf, Shelf

from chathistory.testing.samples import numbered_records

MakeBackend = Callable[..., RedisBackend]


def _named(raw: redis.Redis, name: str) -> list[int]:
    return [int(client["id"]) for client in raw.client_list() if client.get("name") == name]


def _kill(raw: redis.Redis, name: str) -> None:
    ids = _named(raw, name)
    assert ids, f"no connection named {name}"
    for client_id in ids:
        raw.client_kill_filter(_id=client_id)


@pytest.fixture
def name() -> str:
    return f"chtest-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("ttl", [None, 60])
def test_an_append_after_the_server_closed_the_connection_is_stored_once(
    make_backend: MakeBackend, redis_url: str, raw: redis.Redis, name: str, ttl: int | None
) -> None:
    backend = make_backend(url=f"{redis_url}?client_name={name}", ttl=ttl)
    backend.fetch("warm-up")  # the connection is now idle on the backend's shelf
    _kill(raw, name)  # as a server restart or an idle timeout would

    # Sent on the dead socket, the append would fail as "may have been stored";
    # the backend must notice the close first and use a new connection.
    backend.append("s", numbered_records(2))
    assert backend.fetch("s") == numbered_records(2)
    assert len(_named(raw, name)) == 1


def test_an_async_append_after_the_server_closed_the_connection_is_stored_once(
    make_backend: MakeBackend, redis_url: str, raw: redis.Redis, name: str
) -> None:
    backend = make_backend(url=f"{redis_url}?client_name={name}", ttl=60)

    async def scenario() -> None:
        await backend.afetch("warm-up")
        _kill(raw, name)
        await asyncio.sleep(0.05)  # time passes before the next request, as it would
        await backend.aappend("s", numbered_records(2))
        assert await backend.afetch("s") == numbered_records(2)

    asyncio.run(scenario())
    # The loop's connections closed with it (the server notes a close when it gets to it).
    deadline = time.monotonic() + 5
    while _named(raw, name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _named(raw, name) == []


def _use_in_child(backend: RedisBackend, used: multiprocessing.synchronize.Event,
                  finish: multiprocessing.synchronize.Event) -> None:
    backend.append("child", numbered_records(1))
    used.set()
    finish.wait(10)


def test_a_forked_child_makes_its_own_connections(
    make_backend: MakeBackend, redis_url: str, raw: redis.Redis, name: str
) -> None:
    backend = make_backend(url=f"{redis_url}?client_name={name}")
    backend.append("parent", numbered_records(1))
    assert len(_named(raw, name)) == 1

    fork = multiprocessing.get_context("fork")
    used, finish = fork.Event(), fork.Event()
    child = fork.Process(target=_use_in_child, args=(backend, used, finish))
    child.start()
    try:
        assert used.wait(10), "the child did not append"
        # Two sockets: the parent's, and one the child made (not the parent's, shared).
        assert len(_named(raw, name)) == 2
    finally:
        finish.set()
        child.join(10)
    assert child.exitcode == 0
    assert backend.fetch("child") == numbered_records(1)
    backend.append("parent", numbered_records(1, prefix="again"))
    assert len(backend.fetch("parent")) == 2


def test_max_connections_in_the_url_caps_the_connections_made(redis_url: str) -> None:
    shelf = Shelf(redis.ConnectionPool.from_url(f"{redis_url}?max_connections=2"))
    first, second = shelf.take(), shelf.take()
    with pytest.raises(redis.exceptions.MaxConnectionsError):
        shelf.take()
    shelf.put(second)
    assert shelf.take() is second  # an idle one is reused, under the cap
    shelf.put(first)
    shelf.put(second)
    shelf.close()


def test_connections_that_failed_to_connect_do_not_use_up_max_connections() -> None:
    with socket.socket() as closed:  # a port with nothing listening on it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0?max_connections=1&socket_connect_timeout=1"
    shelf = Shelf(redis.ConnectionPool.from_url(url))
    for _ in range(3):  # an outage: each try fails to connect, none is "too many"
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            shelf.take()
        assert not isinstance(caught.value, redis.exceptions.MaxConnectionsError)

    async def async_outage() -> None:
        async_shelf = AsyncShelf(redis.asyncio.ConnectionPool.from_url(url))
        for _ in range(3):
            with pytest.raises(redis.exceptions.ConnectionError) as caught:
                await async_shelf.take()
            assert not isinstance(caught.value, redis.exceptions.MaxConnectionsError)

    asyncio.run(async_outage())
