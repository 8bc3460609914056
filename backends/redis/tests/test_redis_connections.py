"""The backend's connections, on redis-py's blocking pools, against a private server.

A connection the server closed is replaced before use, a forked child makes its
own, a burst of calls waits for a free connection, each event loop's pool closes
with its loop. Each backend here names its connections (``client_name`` in the
URL), so the tests find them in the private server's ``CLIENT LIST``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import redis
from chathistory_redis import RedisBackend
from redis.backoff import NoBackoff
from redis.retry import Retry

from chathistory import BackendUnavailableError
from chathistory.testing import numbered_records

if TYPE_CHECKING:
    from conftest import PrivateRedis, StartRedisServer

WaitUntil = Callable[..., None]


@pytest.fixture(scope="module")
def server(start_redis_server: StartRedisServer) -> Iterator[PrivateRedis]:
    server = start_redis_server()
    yield server
    server.remove()


@pytest.fixture
def admin(server: PrivateRedis) -> Iterator[redis.Redis]:
    with server.client() as client:
        yield client


@pytest.fixture
def name() -> str:
    return f"chtest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_backend(server: PrivateRedis, name: str) -> Iterator[Callable[..., RedisBackend]]:
    """Backends on the private server whose connections are named ``name``."""
    built: list[RedisBackend] = []

    def make(query: str = "", **options: object) -> RedisBackend:
        backend = RedisBackend.from_options(url=f"{server.url}?client_name={name}{query}",
                                            key_prefix=name, **options)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()


def _named(admin: redis.Redis, name: str) -> list[int]:
    return [int(client["id"]) for client in admin.client_list() if client.get("name") == name]


def _kill(admin: redis.Redis, name: str, wait_until: WaitUntil) -> None:
    """Close the connections named ``name`` from the server's side, and wait until it has."""
    ids = _named(admin, name)
    assert ids, f"no connection named {name}"
    for client_id in ids:
        admin.client_kill_filter(_id=client_id)
    wait_until(lambda: not _named(admin, name), "the server has closed them")


@pytest.mark.parametrize("ttl", [None, 60])
def test_an_append_after_the_server_closed_the_connection_is_stored_once(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str, ttl: int | None,
    wait_until: WaitUntil
) -> None:
    backend = make_backend(ttl=ttl, health_check_interval=0)  # the pool's own check alone
    backend.fetch("warm-up")  # the connection is now idle in the pool
    _kill(admin, name, wait_until)  # as a server restart or an idle timeout would

    # Sent on the dead socket, the append would fail as "may have been stored";
    # the pool notices the close first and reconnects.
    backend.append("s", numbered_records(2))
    assert backend.fetch("s") == numbered_records(2)
    assert len(_named(admin, name)) == 1


def test_an_async_append_after_the_server_closed_the_connection_is_stored_once(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str,
    wait_until: WaitUntil
) -> None:
    backend = make_backend(ttl=60, health_check_interval=0)

    async def scenario() -> None:
        await backend.afetch("warm-up")
        # From another thread, so the event loop is idle when the server closes the
        # connection and takes note of it, as between two requests of an application.
        await asyncio.to_thread(_kill, admin, name, wait_until)
        await backend.aappend("s", numbered_records(2))
        assert await backend.afetch("s") == numbered_records(2)

    asyncio.run(scenario())
    # The loop's pool closed with the loop (the server notes a close when it gets to it).
    wait_until(lambda: not _named(admin, name), "the loop's connections are closed")


def test_each_event_loops_pool_closes_with_its_loop(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str,
    wait_until: WaitUntil
) -> None:
    backend = make_backend()

    def in_thread(number: int) -> None:
        asyncio.run(backend.aappend(f"s{number}", numbered_records(2)))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(in_thread, range(8)))
    assert all(len(backend.fetch(f"s{number}")) == 2 for number in range(8))
    # Only the sync pool's connection is left: each loop's closed as the loop shut down.
    wait_until(lambda: len(_named(admin, name)) == 1, "the loops' connections are closed")


def test_close_closes_the_connections_and_the_backend_still_works(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str,
    wait_until: WaitUntil
) -> None:
    backend = make_backend()

    async def scenario() -> None:
        await backend.aappend("s", numbered_records(1))
        backend.append("s", numbered_records(1))
        assert len(_named(admin, name)) == 2
        await backend.aclose()
        wait_until(lambda: not _named(admin, name), "both pools are closed")
        assert len(await backend.afetch("s")) == 2

    asyncio.run(scenario())
    backend.close()
    backend.close()
    assert len(backend.fetch("s")) == 2


def _use_in_child(backend: RedisBackend, used: multiprocessing.synchronize.Event,
                  finish: multiprocessing.synchronize.Event) -> None:
    backend.append("child", numbered_records(1))
    used.set()
    finish.wait(30)


def test_a_forked_child_makes_its_own_connections(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str
) -> None:
    backend = make_backend()
    backend.append("parent", numbered_records(1))
    assert len(_named(admin, name)) == 1

    fork = multiprocessing.get_context("fork")
    used, finish = fork.Event(), fork.Event()
    child = fork.Process(target=_use_in_child, args=(backend, used, finish))
    child.start()
    try:
        assert used.wait(30), "the child did not append"
        # Two sockets: the parent's, and one the child made (not the parent's, shared).
        assert len(_named(admin, name)) == 2
    finally:
        finish.set()
        child.join(30)
    assert child.exitcode == 0
    assert backend.fetch("child") == numbered_records(1)
    backend.append("parent", numbered_records(1, prefix="again"))
    assert len(backend.fetch("parent")) == 2


def test_a_burst_of_ten_thousand_async_appends_waits_for_connections_and_stores_all(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str
) -> None:
    """Far more concurrent calls than connections (50 by default): they queue, none fails."""
    backend = make_backend()
    records = numbered_records(10_000)

    async def burst() -> None:
        await asyncio.gather(*(backend.aappend("s", [record]) for record in records))

    asyncio.run(burst())
    stored = backend.fetch("s")
    assert len(stored) == 10_000
    assert sorted(record["data"]["content"] for record in stored) == sorted(
        record["data"]["content"] for record in records)


@pytest.mark.parametrize("where", ["option", "url"])
def test_max_connections_caps_the_connections_and_calls_wait_for_one(
    make_backend: Callable[..., RedisBackend], admin: redis.Redis, name: str, where: str
) -> None:
    if where == "option":
        backend = make_backend(max_connections=2)
    else:  # redis-py's URL option, which wins over the field
        backend = make_backend(query="&max_connections=2", max_connections=40)
    most_seen = 0

    async def burst() -> None:
        nonlocal most_seen
        for _ in range(5):
            await asyncio.gather(*(backend.aappend(f"a{number}", numbered_records(1))
                                   for number in range(100)))
            most_seen = max(most_seen, len(_named(admin, name)))

    asyncio.run(burst())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda number: backend.append(f"t{number}", numbered_records(1)),
                      range(200)))
        most_seen = max(most_seen, len(_named(admin, name)))
    assert most_seen <= 2
    assert all(len(backend.fetch(f"a{number}")) == 5 for number in range(100))
    assert all(len(backend.fetch(f"t{number}")) == 1 for number in range(200))


def test_connections_that_failed_to_connect_do_not_use_up_max_connections(
    start_redis_server: StartRedisServer
) -> None:
    server = start_redis_server()
    backend = RedisBackend.from_options(url=server.url, max_connections=1, pool_timeout=1)
    server.stop()  # an outage: each try fails to connect, none waits for a free connection
    try:
        for call in (lambda: backend.fetch("s"),
                     lambda: asyncio.run(backend.afetch("s"))):
            for _ in range(2):
                with pytest.raises(BackendUnavailableError, match="onnect") as caught:
                    call()
                assert "No connection available" not in str(caught.value)
        server.start()
        backend.append("s", numbered_records(1))  # the one connection is still to be had
        assert backend.fetch("s") == numbered_records(1)
    finally:
        backend.close()
        server.remove()


def test_errors_name_the_applications_server_not_the_default_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    backend = RedisBackend.from_options(client=client)
    with pytest.raises(BackendUnavailableError, match=f"Redis at localhost:{port}") as caught:
        backend.fetch("s")
    assert "6379" not in str(caught.value)
    client.close()


def test_a_server_nobody_runs_is_unavailable_saying_what_to_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    backend = RedisBackend.from_options(url=f"redis://127.0.0.1:{port}")
    with pytest.raises(BackendUnavailableError) as caught:
        backend.fetch("s")
    assert str(caught.value).endswith(
        f"Redis at 127.0.0.1:{port}: ConnectionError: Error 111 connecting to 127.0.0.1:{port}. "
        "Connection refused. (check that Redis runs there and that the url option, or your "
        "client, points at it)")
    backend.close()
