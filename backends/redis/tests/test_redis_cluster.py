"""On a real Redis Cluster, through the application's RedisCluster clients and the backend's own
(``url=<a node>, cluster=True``), from Python and from the command line.

The module starts a private three-node cluster (free local ports, temporary
directories, no persistence) and removes it afterwards. It skips if
``redis-server`` or ``redis-cli`` is not installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
from chathistory_redis import RedisBackend
from chathistory_redis.errors import ReplyLostError, is_transient, never_sent
from click.testing import CliRunner, Result
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from chathistory import BackendUnavailableError, ChatHistoryError, PermissionDeniedError
from chathistory.cli import main
from chathistory.testing import (
    HOSTILE_SESSION_IDS,
    BackendContract,
    numbered_records,
    run_without_blocking,
)

if TYPE_CHECKING:
    from conftest import PrivateRedis, StartRedisServer

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


@pytest.fixture
def seed(cluster_ports: list[int]) -> str:
    """The URL of one node; the backend's own clients find the others from it."""
    return f"redis://127.0.0.1:{cluster_ports[0]}/0"


class TestRedisBackendOnClusterUrl(BackendContract):
    """The whole suite on the backend's own RedisCluster clients, natively async."""

    @pytest.fixture
    def backend(self, cluster: redis.RedisCluster, seed: str) -> Iterator[RedisBackend]:
        backend = RedisBackend.from_options(url=seed, cluster=True, key_prefix="app", ttl=3600)
        yield backend
        backend.close()


def _chathistory(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_the_cli_lists_and_erases_on_a_cluster_from_its_url(cluster: redis.RedisCluster,
                                                            seed: str) -> None:
    backend = RedisBackend.from_options(url=seed, cluster=True, key_prefix="cli")
    owners = {f"user-{number}": "ada" if number % 2 else "bob" for number in range(12)}
    for session_id, owner in owners.items():
        backend.append(session_id, numbered_records(2))
        backend.update_session(session_id, owner=owner)
    backend.close()
    assert len({cluster.get_node_from_key(backend.key(session_id)).name
                for session_id in owners}) == NODES
    options = ["-b", "redis", "-o", f"url={seed}", "-o", "cluster=true", "-o", "key_prefix=cli"]

    def listed() -> list[tuple[str, int]]:
        lines = _chathistory("sessions", *options, "--json").stdout.splitlines()
        return [(entry["session_id"], entry["messages"]) for entry in map(json.loads, lines)]

    assert listed() == [(session_id, 2) for session_id in sorted(owners)]
    erased = _chathistory("erase", *options, "--owner", "ada", "--yes", "--json")
    receipt = json.loads(erased.stdout)
    assert (receipt["sessions"], receipt["messages"]) == (6, 12)
    assert listed() == [(session_id, 2) for session_id in sorted(owners)
                        if owners[session_id] == "bob"]


def _connections_named(ports: list[int], name: str) -> int:
    total = 0
    for port in ports:
        with redis.Redis(port=port) as admin:
            total += sum(1 for client in admin.client_list() if client["name"] == name)
    return total


def test_own_cluster_clients_connect_on_first_use_and_close_is_closed(
        cluster: redis.RedisCluster, cluster_ports: list[int], wait_until: WaitUntil) -> None:
    url = f"redis://127.0.0.1:{cluster_ports[0]}/0?client_name=owned"
    backend = RedisBackend.from_options(url=url, cluster=True, key_prefix="owned")
    assert _connections_named(cluster_ports, "owned") == 0  # built, not connected
    sessions = [f"s{number}" for number in range(20)]  # on every node
    for session_id in sessions:
        backend.append(session_id, numbered_records(1))
    assert _connections_named(cluster_ports, "owned") >= NODES
    backend.close()
    wait_until(lambda: _connections_named(cluster_ports, "owned") == 0,
               "close() closed the sync connections")

    async def scenario() -> None:
        for session_id in sessions:
            assert await backend.afetch(session_id) == numbered_records(1)
        assert await asyncio.to_thread(_connections_named, cluster_ports, "owned") >= NODES
        await backend.aclose()

    asyncio.run(scenario())
    wait_until(lambda: _connections_named(cluster_ports, "owned") == 0,
               "aclose() closed the async connections")
    assert backend.fetch("s0") == numbered_records(1)  # a new client after close()
    backend.close()


def test_a_refused_seed_is_unavailable_naming_it() -> None:
    port = _refused_port()
    backend = RedisBackend.from_options(url=f"redis://127.0.0.1:{port}/0", cluster=True,
                                        socket_connect_timeout=1)  # connects on first use
    seed = rf"Redis Cluster at 127\.0\.0\.1:{port}: .*check that Redis runs there"
    with pytest.raises(BackendUnavailableError, match=rf"after 4 attempts: {seed}"):
        backend.fetch("s")
    with pytest.raises(BackendUnavailableError, match=rf"after 4 attempts: {seed}") as caught:
        backend.append("s", numbered_records(1))  # it surely did not run: retried
    assert not isinstance(caught.value, ReplyLostError)
    with pytest.raises(BackendUnavailableError, match=rf"after 4 attempts: {seed}"):
        run_without_blocking(backend.aappend("s", numbered_records(1)))
    backend.close()


def test_a_server_that_is_no_cluster_says_so(redis_server: PrivateRedis) -> None:
    backend = RedisBackend.from_options(url=redis_server.url, cluster=True)
    said = f"Redis Cluster at 127.0.0.1:{redis_server.port}: .*Cluster mode is not enabled"
    with pytest.raises(ChatHistoryError, match=said) as caught:
        backend.fetch("s")
    assert not isinstance(caught.value, BackendUnavailableError)  # not retried
    with pytest.raises(ChatHistoryError, match=said):
        run_without_blocking(backend.afetch("s"))
    backend.close()



def test_a_cluster_node_reached_without_the_cluster_option_says_to_set_it(
        cluster_ports: list[int]) -> None:
    # A plain client follows no MOVED: the sessions of other nodes' slots are refused.
    backend = RedisBackend.from_options(url=f"redis://127.0.0.1:{cluster_ports[0]}/0")
    said = (rf"Redis at 127\.0\.0\.1:{cluster_ports[0]} is a Redis Cluster node \(it "
            r"redirected a key to 127\.0\.0\.1:\d+\): set the option cluster=True")
    with pytest.raises(ChatHistoryError, match=said) as caught:
        for number in range(20):  # some of them live on another node
            backend.fetch(f"s{number}")
    assert not isinstance(caught.value, BackendUnavailableError)  # not retried
    backend.close()

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
    # The catalog, every owner's set included, is in the index's slot: its scripts are
    # atomic there, while the sessions stay spread.
    for number, session_id in enumerate(sessions):
        backend.update_session(session_id, owner=f"owner-{number % 3}")
    catalog_keys = {key for key in cluster.scan_iter(count=1000, target_nodes=cluster.ALL_NODES)
                    if not key.startswith(b"app:{")}
    assert {cluster.keyslot(key) for key in catalog_keys} == {cluster.keyslot(by_id)}
    assert sum(1 for key in catalog_keys if b"by-owner:" in key) == 3
    owned = [summary.session_id for owner in ("owner-0", "owner-1", "owner-2")
             for summary in backend.list_summaries(owner=owner, limit=1000).summaries]
    assert sorted(owned) == sorted(sessions)


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


# Failures: each reported as what it is, an append never repeated once sent ------------------

BUSY = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) * 1000000 + now[2] - start[2] > tonumber(ARGV[1]) then return 1 end
end
"""


@contextmanager
def busy_node(port: int, seconds: float) -> Iterator[None]:
    """Keep one node busy (a Lua loop run from another connection) within the block."""
    with (redis.Redis(port=port) as admin,
          redis.Redis(port=port, socket_timeout=0.02, retry=Retry(NoBackoff(), 0)) as probe):
        thread = threading.Thread(target=admin.eval, args=(BUSY, 0, int(seconds * 1e6)))
        thread.start()
        try:
            # The block starts once the loop runs: a PING no longer answers. A fixed sleep
            # was not enough on a loaded machine (the thread had not sent the loop yet).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    probe.ping()
                except redis.TimeoutError:
                    break
                time.sleep(0.005)
            else:
                raise AssertionError(f"node {port} never became busy")
            yield
        finally:
            thread.join()


def _session_away_from_the_index(backend: RedisBackend,
                                 client: redis.RedisCluster | redis.asyncio.RedisCluster
                                 ) -> str:
    """A session on another node than the sessions index (written first on a cluster), so
    that the append itself meets the busy node."""
    index_node = client.get_node_from_key(backend.index_keys[0])
    return next(session for session in (f"s{number}" for number in range(100))
                if client.get_node_from_key(backend.key(session)) != index_node)


def test_a_cluster_append_whose_reply_is_lost_is_not_repeated(cluster_ports: list[int]
                                                               ) -> None:
    # redis-py's own retry (on by default) would send it again once the node answers.
    client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0], socket_timeout=0.2)
    try:
        backend = RedisBackend.from_options(client=client, key_prefix="lost")
        session = _session_away_from_the_index(backend, client)
        backend.append(session, numbered_records(1, prefix="warm"))  # connected, cached
        node = client.get_node_from_key(backend.key(session))
        with (busy_node(node.port, 0.8),
              pytest.raises(ReplyLostError, match="not repeated") as caught):
            backend.append(session, numbered_records(2))
        assert f"127.0.0.1:{node.port}" in str(caught.value)  # the node, not a config URL
        assert backend.fetch(session) == [*numbered_records(1, prefix="warm"),
                                          *numbered_records(2)]
        backend.clear(session)
    finally:
        client.close()


def test_an_async_cluster_append_whose_reply_is_lost_is_not_repeated(
        cluster_ports: list[int]) -> None:
    async def scenario() -> None:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster_ports[0],
                                            socket_timeout=0.2)
        try:
            backend = RedisBackend.from_options(async_client=client, key_prefix="lost")
            await client.initialize()
            session = _session_away_from_the_index(backend, client)
            await backend.aappend(session, numbered_records(1, prefix="warm"))
            node = client.get_node_from_key(backend.key(session))
            assert node is not None
            with (busy_node(node.port, 0.8),
                  pytest.raises(ReplyLostError, match=f"127.0.0.1:{node.port}")):
                await backend.aappend(session, numbered_records(2))
            assert await backend.afetch(session) == [*numbered_records(1, prefix="warm"),
                                                     *numbered_records(2)]
            await backend.aclear(session)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def _own_clients_and_a_session(cluster: redis.RedisCluster, seed: str, key_prefix: str
                               ) -> tuple[RedisBackend, str, int]:
    """A backend on its own cluster clients that soon give up a reply, a session away from
    the index, and the port of that session's node."""
    backend = RedisBackend.from_options(url=seed, cluster=True, key_prefix=key_prefix,
                                        socket_timeout=0.2)
    session = _session_away_from_the_index(backend, cluster)
    return backend, session, cluster.get_node_from_key(backend.key(session)).port


def test_an_append_on_own_cluster_clients_whose_reply_is_lost_is_not_repeated(
        cluster: redis.RedisCluster, seed: str) -> None:
    backend, session, port = _own_clients_and_a_session(cluster, seed, "lost-own")
    warm, lost = numbered_records(1, prefix="warm"), numbered_records(2)
    backend.append(session, warm)  # connected, slot map loaded
    with busy_node(port, 0.8), pytest.raises(ReplyLostError, match=f"127.0.0.1:{port}"):
        backend.append(session, lost)
    assert backend.fetch(session) == [*warm, *lost]

    async def scenario() -> None:
        await backend.aappend(session, warm)
        with busy_node(port, 0.8), pytest.raises(ReplyLostError, match=f"127.0.0.1:{port}"):
            await backend.aappend(session, lost)
        assert await backend.afetch(session) == [*warm, *lost, *warm, *lost]

    asyncio.run(scenario())
    backend.close()


def test_a_cluster_erasure_whose_reply_is_lost_is_not_counted_again(
        cluster: redis.RedisCluster, seed: str) -> None:
    # redis-py's cluster pipeline sends a command again after a lost reply: the
    # erasure, run twice, would count 0 messages where it deleted 3.
    backend, session, port = _own_clients_and_a_session(cluster, seed, "lost-erase")
    backend.erase_sessions([session])  # connected, slot map loaded, scripts cached
    backend.append(session, numbered_records(3))
    with busy_node(port, 0.8), pytest.raises(ReplyLostError, match="not counted"):
        backend.erase_sessions([session])
    assert backend.fetch(session) == []  # the node ran it once the loop ended

    async def scenario() -> None:
        await backend.aerase_sessions([session])
        await backend.aappend(session, numbered_records(3))
        with busy_node(port, 0.8), pytest.raises(ReplyLostError, match="not counted"):
            await backend.aerase_sessions([session])
        assert await backend.afetch(session) == []

    asyncio.run(scenario())
    backend.close()


def test_a_cluster_prune_whose_reply_is_lost_is_not_counted_again(
        cluster: redis.RedisCluster, seed: str) -> None:
    backend, session, port = _own_clients_and_a_session(cluster, seed, "lost-prune")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    backend.append(session, numbered_records(1))
    assert backend.delete_sessions_before(tomorrow) == 1  # connected, scripts cached
    backend.append(session, numbered_records(3))
    with busy_node(port, 0.8), pytest.raises(ReplyLostError, match="not counted"):
        backend.delete_sessions_before(tomorrow)  # redis-py's pipeline: counted 0
    assert backend.fetch(session) == []
    backend.close()


def test_reads_on_a_busy_node_are_repeated(cluster_ports: list[int]) -> None:
    client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0], socket_timeout=0.2)
    try:
        backend = RedisBackend.from_options(client=client, key_prefix="lost")
        backend.append("r", numbered_records(2))
        node = client.get_node_from_key(backend.key("r"))
        with busy_node(node.port, 0.3):
            assert backend.fetch("r") == numbered_records(2)
        backend.clear("r")
    finally:
        client.close()


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def test_a_connection_never_made_counts_as_never_sent() -> None:
    port = _refused_port()
    with pytest.raises(redis.ConnectionError) as refused:
        redis.Redis(port=port, retry=Retry(NoBackoff(), 0)).ping()

    async def async_refusal() -> BaseException:
        client = redis.asyncio.Redis(port=port, retry=AsyncRetry(NoBackoff(), 0))
        try:
            await client.ping()
        except redis.ConnectionError as error:
            return error
        finally:
            await client.aclose()
        raise AssertionError("connected to a closed port")

    assert never_sent(refused.value)
    assert never_sent(asyncio.run(async_refusal()))
    assert is_transient(refused.value)


def test_a_reply_lost_counts_as_maybe_run(cluster_ports: list[int]) -> None:
    with (redis.Redis(port=cluster_ports[0], socket_timeout=0.1,
                      retry=Retry(NoBackoff(), 0)) as client,
          busy_node(cluster_ports[0], 0.5), pytest.raises(redis.TimeoutError) as timed_out):
        client.ping()
    assert not never_sent(timed_out.value)


def test_clusterdown_is_retried_then_unavailable_naming_the_node(
        cluster_ports: list[int], wait_until: WaitUntil) -> None:
    client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    backend = RedisBackend.from_options(client=client, key_prefix="down")
    node = client.get_node_from_key(backend.key("s"))
    slot = client.keyslot(backend.key("s"))
    try:
        with redis.Redis(port=node.port) as admin:
            admin.cluster("delslots", slot)  # the node says CLUSTERDOWN to every command
            try:
                with pytest.raises(BackendUnavailableError) as caught:
                    backend.append("s", numbered_records(2))
            finally:
                admin.cluster("addslots", slot)
        message = str(caught.value)
        assert "after 4 attempts" in message  # retried, as a refused command is not
        assert "CLUSTERDOWN" in message or "ClusterDown" in message
        assert f"Redis Cluster node 127.0.0.1:{node.port}" in message
        assert not isinstance(caught.value, ReplyLostError)
        wait_until(lambda: all("cluster_state:ok" in _cli(port, "cluster", "info")
                               for port in cluster_ports), "the cluster is ok again")
        backend.append("s", numbered_records(1))
        assert backend.fetch("s") == numbered_records(1)  # the refused one was never run
        backend.clear("s")
    finally:
        client.close()


def _two_sessions_apart(client: redis.RedisCluster, backend: RedisBackend) -> tuple[str, str]:
    """Two sessions on two nodes, the second not on the sessions index's node."""
    index_node = client.get_node_from_key(backend.index_keys[0])
    down = next(node for node in client.get_primaries() if node != index_node)
    sessions = [f"s{number}" for number in range(100)]
    first = next(session for session in sessions
                 if client.get_node_from_key(backend.key(session)) != down)
    second = next(session for session in sessions
                  if client.get_node_from_key(backend.key(session)) == down)
    return first, second


@contextmanager
def slot_refused(client: redis.RedisCluster, key: bytes, cluster_ports: list[int],
                 wait_until: WaitUntil) -> Iterator[None]:
    """Within the block, the node of ``key``'s slot says CLUSTERDOWN to it; after it, the
    cluster is ok again."""
    slot = client.keyslot(key)
    with redis.Redis(port=client.get_node_from_key(key).port) as admin:
        admin.cluster("delslots", slot)
        try:
            yield
        finally:
            admin.cluster("addslots", slot)
    wait_until(lambda: all("cluster_state:ok" in _cli(port, "cluster", "info")
                           for port in cluster_ports), "the cluster is ok again")


def test_a_cluster_append_many_failing_midway_is_not_repeated(
        cluster_ports: list[int], wait_until: WaitUntil) -> None:
    client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    backend = RedisBackend.from_options(client=client, key_prefix="many")
    first, second = _two_sessions_apart(client, backend)
    try:
        with (slot_refused(client, backend.key(second), cluster_ports, wait_until),
              pytest.raises(BackendUnavailableError, match="1 of 2 sessions were appended")):
            backend.append_many({first: numbered_records(2), second: numbered_records(1)})
        assert backend.fetch(first) == numbered_records(2)  # once: the rest was not retried
        assert backend.fetch(second) == []
        backend.clear(first)
    finally:
        client.close()


def test_a_cluster_erasure_failing_midway_is_not_repeated(
        cluster_ports: list[int], wait_until: WaitUntil) -> None:
    # Repeated, the erasure would count 0 for the session it had already erased.
    client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    backend = RedisBackend.from_options(client=client, key_prefix="erase-midway")
    first, second = _two_sessions_apart(client, backend)
    backend.append_many({first: numbered_records(2), second: numbered_records(1)})
    try:
        with (slot_refused(client, backend.key(second), cluster_ports, wait_until),
              pytest.raises(BackendUnavailableError, match=r"1 of 3 deleting scripts ran "
                            r"\(what they deleted is not counted")):
            backend.erase_sessions([first, second])
        assert backend.fetch(first) == []
        assert backend.erase_sessions([first, second]).messages == 1  # a rerun finishes it
        assert backend.list_sessions() == []
    finally:
        client.close()


@contextmanager
def user_without_scripts_on(node_port: int, cluster_ports: list[int]) -> Iterator[tuple[str, str]]:
    """Within the block, an ACL user (its name and password) with every right on every node
    but ``node_port``'s, where it may run no script: ACLs are per node on a cluster."""
    name, password = "eraser", "eraser-password"
    for port in cluster_ports:
        with redis.Redis(port=port) as admin:
            admin.acl_setuser(name, enabled=True, passwords=[f"+{password}"], keys=["*"],
                              commands=["+@all", *(["-evalsha", "-eval"]
                                                   if port == node_port else [])])
    try:
        yield name, password
    finally:
        for port in cluster_ports:
            with redis.Redis(port=port) as admin:
                admin.acl_deluser(name)


def test_a_cluster_erasure_refused_midway_says_what_ran_and_that_a_rerun_finishes_it(
        cluster: redis.RedisCluster, cluster_ports: list[int]) -> None:
    setup = RedisBackend.from_options(client=cluster, key_prefix="erase-refused")
    first, second = _two_sessions_apart(cluster, setup)
    setup.append_many({first: numbered_records(2), second: numbered_records(1)})
    refusing = cluster.get_node_from_key(setup.key(second)).port
    with user_without_scripts_on(refusing, cluster_ports) as (user, password):
        client = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0], username=user,
                                    password=password)
        try:
            backend = RedisBackend.from_options(client=client, key_prefix="erase-refused")
            with pytest.raises(PermissionDeniedError) as caught:
                backend.erase_sessions([first, second])
        finally:
            client.close()
    message = str(caught.value)
    assert "1 of 3 deleting scripts ran" in message  # the first session is gone already
    assert "run again finishes it" in message
    assert f"127.0.0.1:{refusing}" in message and "evalsha" in message  # what to fix
    assert setup.fetch(first) == []
    assert setup.erase_sessions([first, second]).messages == 1  # the rerun finishes it
    assert setup.list_sessions() == []


def test_a_cluster_append_many_refused_midway_says_which_were_appended(
        cluster: redis.RedisCluster) -> None:
    backend = RedisBackend.from_options(client=cluster, key_prefix="many-refused")
    first, second = _two_sessions_apart(cluster, backend)
    cluster.set(backend.key(second), "not a list")
    with pytest.raises(ChatHistoryError) as caught:
        backend.append_many({first: numbered_records(2), second: numbered_records(1)})
    message = str(caught.value)
    assert "1 of 2 sessions were appended" in message  # a rerun would append it twice
    assert "WRONGTYPE" in message
    assert backend.fetch(first) == numbered_records(2)
