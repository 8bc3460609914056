"""On a real Redis Cluster, through the application's RedisCluster clients.

The module starts a private three-node cluster (free local ports, temporary
directories, no persistence) and removes it afterwards. It skips if
``redis-server`` or ``redis-cli`` is not installed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
from chathistory_redis import RedisBackend
from redis.crc import key_slot

from chathistory.testing import HOSTILE_SESSION_IDS, BackendContract, numbered_records

if TYPE_CHECKING:
    from conftest import StartRedisServer

WaitUntil = Callable[..., None]

NODES = 3


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=10)
    return done.stdout


@pytest.fixture(scope="module")
def cluster_ports(start_redis_server: StartRedisServer, wait_until: WaitUntil
                  ) -> Iterator[list[int]]:
    if not shutil.which("redis-cli"):
        pytest.skip("redis-cli is needed to join a cluster")
    nodes = [start_redis_server(cluster=True) for _ in range(NODES)]
    try:
        ports = [node.port for node in nodes]
        bounds = [16384 * number // NODES for number in range(NODES + 1)]
        for number, port in enumerate(ports):
            _cli(port, "cluster", "addslotsrange", str(bounds[number]), str(bounds[number + 1] - 1))
        for port in ports[1:]:
            _cli(ports[0], "cluster", "meet", "127.0.0.1", str(port))
        for port in ports:  # a new primary waits 2 s before it reports the cluster ok
            wait_until(lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info")
                       and _cli(port, "cluster", "slots").count("127.0.0.1") >= NODES,
                       "the cluster is ready")
        yield ports
    finally:
        for node in nodes:
            node.remove()


@pytest.fixture
def cluster(cluster_ports: list[int]) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    yield client
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    client.close()


class TestRedisBackendOnCluster(BackendContract):
    """The whole suite through a sync RedisCluster (async twins in a worker thread)."""

    @pytest.fixture
    def backend(self, cluster: redis.RedisCluster) -> RedisBackend:
        return RedisBackend.from_options(client=cluster, key_prefix="app", ttl=3600)


def test_sessions_spread_over_the_nodes_each_whole_on_one(cluster: redis.RedisCluster,
                                                          cluster_ports: list[int]) -> None:
    backend = RedisBackend.from_options(client=cluster, key_prefix="app", ttl=60)
    sessions = [*HOSTILE_SESSION_IDS, *(f"user-{number}" for number in range(30)),
                "}{", "{a}b", "%7B"]
    for number, session_id in enumerate(sessions):
        backend.append(session_id, numbered_records(2, prefix=f"{number}-"))
    expected = {backend.key(session_id) for session_id in sessions}
    held = {}
    for port in cluster_ports:
        with redis.Redis(port=port) as node:
            # a node lists only its own keys; the index's sorted sets are no lists
            held[port] = set(node.scan_iter(count=1000, _type="list"))
    assert set().union(*held.values()) == expected
    assert sum(len(keys) for keys in held.values()) == len(expected)
    assert all(held.values()), "every node holds some sessions"
    for number, session_id in enumerate(sessions):
        key = backend.key(session_id)
        tag = key[key.index(b"{") + 1:-1]
        assert cluster.keyslot(key) == key_slot(tag)  # the slot of the session part alone
        assert [r["data"]["content"] for r in backend.fetch(session_id)] == [
            f"{number}-0", f"{number}-1"]
    by_id, by_time = backend.index_keys
    assert cluster.keyslot(by_id) == cluster.keyslot(by_time)  # one script updates both
    listed = backend.list_sessions(limit=1000)
    assert [info.session_id for info in listed] == sorted(sessions)
    assert {info.messages for info in listed} == {2}


def test_native_async_on_an_async_cluster_client(cluster_ports: list[int]) -> None:
    async def scenario() -> None:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster_ports[0])
        try:
            backend = RedisBackend.from_options(async_client=client, key_prefix="app", ttl=60)
            await backend.aappend("user{1}", numbered_records(3))
            await backend.aappend("user{1}", numbered_records(1, prefix="late"))
            assert await backend.afetch("user{1}", limit=2) == [
                *numbered_records(3)[2:], *numbered_records(1, prefix="late")]
            assert 0 < await client.ttl(backend.key("user{1}")) <= 60
            big = numbered_records(10_000)  # more values than one Lua unpack() takes
            await backend.aappend("big", big)
            assert await backend.afetch("big") == big
            await backend.aclear("big")
            await backend.aclear("user{1}")
            assert await backend.afetch("user{1}") == []
            await backend.aclose()
        finally:
            await client.aclose()

    asyncio.run(scenario())
