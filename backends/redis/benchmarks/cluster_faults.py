"""Appends under faults on a private Redis Cluster: nothing acknowledged is lost or stored twice.

Run from the repository root (``redis-server`` and ``redis-cli`` on PATH)::

    .venv/bin/python backends/redis/benchmarks/cluster_faults.py [--seconds 4] [--json]

It starts a cluster of three primaries, each with one replica (six
``redis-server`` processes on free local ports, in a temporary directory,
removed at the end), and has writers (sync threads, each with its own
``redis.RedisCluster``, and async tasks on one ``redis.asyncio.RedisCluster``)
append numbered batches of 2 messages to sessions of their own, through the
``redis`` backend, while the faults below happen one phase after another:

* ``calm``: none;
* ``kills``: ``CLIENT KILL TYPE normal`` on a random primary every 20-100 ms,
  so connections die before, during and after appends;
* ``reshard``: every slot that holds a session (and the sessions index's) is
  migrated to another primary key by key (``CLUSTER SETSLOT ... MIGRATING`` /
  ``IMPORTING``, ``MIGRATE``, ``SETSLOT ... NODE``), so appends meet ``ASK`` and
  ``MOVED``;
* ``crash``: the primary holding most sessions is killed (``SIGKILL``); its
  replica is promoted after the cluster's node timeout (or, when no election
  happens within 20 s on a loaded machine, by ``CLUSTER FAILOVER FORCE``); the
  old primary is started again and rejoins as a replica;
* ``handover``: ``CLUSTER FAILOVER`` on a replica (a manual failover, which
  waits until the replica has every write of its primary).

Each writer owns its sessions: it sets itself as their owner in the session
catalog before its first append.

Then every session is read back, and each batch counted by what its append
returned: acknowledged (no error), ``ReplyLostError`` (Redis may or may not
have stored it), or unavailable (not stored: the append was never run). The
report says, per phase: batches written, acknowledged ones lost, batches stored
twice, sessions whose batches are out of order, and where the lost-reply
batches ended up. The catalog is then listed owner by owner, page after page:
``catalog`` counts the sessions holding messages that are not listed under
their owner, listed more than once, or listed with a count other than the
messages they hold (each must be 0).

What an acknowledged append survives: Redis replicates asynchronously, so a
primary killed at once after acknowledging an append may not have passed it to
its replica; the promoted replica then lacks it. ``crash`` shows how often this
happens here; ``handover`` loses nothing, since a manual failover waits for the
replica to catch up.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from chathistory_redis import RedisBackend
from chathistory_redis.errors import ReplyLostError
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from chathistory import BackendUnavailableError, ChatHistoryError
from chathistory.testing import numbered_records

PHASES = ("calm", "kills", "reshard", "crash", "handover")
NODE_TIMEOUT_MS = 1000


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = random.randrange(20000, 30000)
        if _port_is_free(port) and _port_is_free(port + 10000):
            return port


def wait_until(condition: Callable[[], object], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting until {what}")
        time.sleep(0.05)


class Node:
    """One ``redis-server`` of the cluster, in a directory of its own."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory / str(self.port)
        self.directory.mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--save", "", "--appendonly", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--logfile", "log"])
        wait_until(self.answers, f"redis-server on port {self.port} answers")

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1,
                           retry=Retry(NoBackoff(), 0), decode_responses=True)

    def answers(self) -> bool:
        try:
            with self.admin() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def run(self, *command: Any) -> Any:
        with self.admin() as client:
            return client.execute_command(*command)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class Cluster:
    """Three primaries, each with one replica, made with ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [Node(directory) for _ in range(6)]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{node.port}" for node in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok()

    def alive(self) -> list[Node]:
        return [node for node in self.nodes if node.process is not None]

    def wait_ok(self) -> None:
        """Until every live node says the cluster is ok, knows 3 primaries and 3 replicas in
        sync (a primary killed before its replica's first sync would take its data along),
        and all agree on the current epoch.

        The last is needed before a crash: a reshard raises its target's config epoch
        without an election, and a primary killed before the others heard of it can come
        back with the epoch its replica was promoted with; Redis may then settle the tie in
        favour of the restarted primary, which has lost its data, and its replica empties
        itself to follow it.
        """
        def settled() -> bool:
            try:
                epochs = set()
                for node in self.alive():
                    info = node.run("CLUSTER", "INFO")
                    if "cluster_state:ok" not in info:
                        return False
                    epochs.add(next(line for line in info.splitlines()
                                    if line.startswith("cluster_current_epoch:")))
                    roles = Counter(line.split()[2].replace("myself,", "")
                                    for line in node.run("CLUSTER", "NODES").splitlines()
                                    if "fail" not in line.split()[2])
                    if roles != Counter({"master": 3, "slave": 3}):
                        return False
                    replication = node.run("INFO", "replication")  # a dict
                    if (replication.get("role") == "slave"
                            and replication.get("master_link_status") != "up"):
                        return False
            except redis.RedisError:
                return False
            return len(epochs) == 1

        wait_until(settled, "the cluster is ok, with 3 primaries and 3 replicas in sync", 60)

    def keys(self) -> int:
        """How many keys the primaries hold (a session whose data vanished would show)."""
        return sum(int(node.run("DBSIZE")) for row in self.table()
                   if row["role"] == "primary" and "fail" not in row.get("flags", "")
                   for node in [self.node(row["port"])] if node.process is not None)

    def table(self) -> list[dict[str, Any]]:
        """Each node's id, port, role and primary (from a live node's CLUSTER NODES)."""
        rows = []
        for line in self.alive()[0].run("CLUSTER", "NODES").splitlines():
            parts = line.split()
            rows.append({"id": parts[0], "port": int(parts[1].split(":")[1].split("@")[0]),
                         "role": "primary" if "master" in parts[2] else "replica",
                         "of": parts[3], "slots": parts[8:]})
        return rows

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def owner(self, slot: int) -> dict[str, Any]:
        for row in self.table():
            for part in row["slots"]:
                if part.startswith("["):
                    continue
                low, _, high = part.partition("-")
                if int(low) <= slot <= int(high or low):
                    return row
        raise LookupError(f"no node serves slot {slot}")

    def remove(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class Batch:
    session: str
    number: int
    phase: str
    outcome: str = "pending"   # acknowledged, reply_lost, unavailable, error


@dataclass
class Run:
    phase: str = "calm"
    stop: threading.Event = field(default_factory=threading.Event)
    batches: list[Batch] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, batch: Batch, error: BaseException | None) -> None:
        if error is None:
            batch.outcome = "acknowledged"
        elif isinstance(error, ReplyLostError):
            batch.outcome = "reply_lost"
        elif isinstance(error, BackendUnavailableError):
            batch.outcome = "unavailable"
        else:
            batch.outcome = "error"
        with self.lock:
            self.batches.append(batch)
            if error is not None:
                self.errors[f"{batch.phase} {batch.outcome} {type(error).__name__}: "
                            f"{str(error)[:300]}"] += 1


def _sessions(writer: str, count: int) -> list[str]:
    return [f"{writer}-s{number}" for number in range(count)]


def own(backend: RedisBackend, writer: str, sessions: int) -> None:
    """The writer's sessions are its own in the catalog (set before the faults begin)."""
    for session in _sessions(writer, sessions):
        backend.update_session(session, owner=writer)


def sync_writer(run: Run, port: int, writer: str, sessions: int) -> None:
    client = redis.RedisCluster(host="127.0.0.1", port=port, socket_timeout=2,
                                socket_connect_timeout=1)
    backend = RedisBackend.from_options(client=client, key_prefix="faults")
    try:
        own(backend, writer, sessions)
        number = 0
        while not run.stop.is_set():
            for session in _sessions(writer, sessions):
                batch = Batch(session, number, run.phase)
                try:
                    backend.append(session, numbered_records(2, prefix=f"b{number}-"))
                except ChatHistoryError as error:
                    run.record(batch, error)
                else:
                    run.record(batch, None)
            number += 1
    finally:
        client.close()


def async_writers(run: Run, port: int, writers: list[str], sessions: int) -> None:
    async def write(backend: RedisBackend, writer: str) -> None:
        number = 0
        while not run.stop.is_set():
            for session in _sessions(writer, sessions):
                batch = Batch(session, number, run.phase)
                try:
                    await backend.aappend(session, numbered_records(2, prefix=f"b{number}-"))
                except ChatHistoryError as error:
                    run.record(batch, error)
                else:
                    run.record(batch, None)
            number += 1

    async def main() -> None:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=port, socket_timeout=2,
                                            socket_connect_timeout=1)
        backend = RedisBackend.from_options(async_client=client, key_prefix="faults")
        try:
            for writer in writers:
                for session in _sessions(writer, sessions):
                    await backend.aupdate_session(session, owner=writer)
            await asyncio.gather(*(write(backend, writer) for writer in writers))
        finally:
            await client.aclose()

    asyncio.run(main())


# Faults -------------------------------------------------------------------------------

def kill_connections(cluster: Cluster, until: float) -> int:
    kills = 0
    while time.monotonic() < until:
        primaries = [row for row in cluster.table() if row["role"] == "primary"]
        node = cluster.node(random.choice(primaries)["port"])
        with node.admin() as admin:
            kills += int(admin.client_kill_filter(_type="normal", skipme=True))
        time.sleep(random.uniform(0.02, 0.1))
    return kills


def migrate_slot(cluster: Cluster, slot: int) -> None:
    """Move ``slot`` to the next primary, one key at a time (appends meet ASK meanwhile)."""
    source = cluster.owner(slot)
    primaries = sorted((row for row in cluster.table() if row["role"] == "primary"),
                       key=lambda row: row["port"])
    target = primaries[(primaries.index(source) + 1) % len(primaries)]
    from_node, to_node = cluster.node(source["port"]), cluster.node(target["port"])
    to_node.run("CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
    from_node.run("CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
    while keys := from_node.run("CLUSTER", "GETKEYSINSLOT", slot, 1):
        from_node.run("MIGRATE", "127.0.0.1", target["port"], "", 0, 5000, "KEYS", *keys)
        time.sleep(0.01)
    for node in (to_node, from_node, *(cluster.node(row["port"]) for row in primaries
                                       if row not in (source, target))):
        node.run("CLUSTER", "SETSLOT", slot, "NODE", target["id"])


def reshard(cluster: Cluster, slots: list[int], until: float) -> int:
    moved = 0
    while time.monotonic() < until:
        for slot in slots:
            migrate_slot(cluster, slot)
            moved += 1
            if time.monotonic() >= until:
                break
    return moved


def crash_primary(cluster: Cluster, slots: list[int]) -> str:
    """Kill the primary serving most of ``slots``; wait for its replica; start it again.

    Returns how the replica took over: ``automatic`` (after the node timeout), or, when
    an election fails to happen on a loaded machine, ``FORCE`` or ``TAKEOVER``.
    """
    owners = Counter(cluster.owner(slot)["port"] for slot in slots)
    victim = cluster.node(owners.most_common(1)[0][0])
    victim_id = next(row["id"] for row in cluster.table() if row["port"] == victim.port)
    replica = next(row for row in cluster.table() if row["of"] == victim_id)
    victim.kill()

    def served_elsewhere() -> bool:
        return all(cluster.owner(slot)["port"] != victim.port for slot in slots)

    how = "automatic"
    for option in (None, "FORCE", "TAKEOVER"):
        if option is not None:
            how = option
            cluster.node(replica["port"]).run("CLUSTER", "FAILOVER", option)
        try:
            wait_until(served_elsewhere, "the crashed primary's replica serves its slots", 20)
            break
        except TimeoutError:
            continue
    else:
        for node in cluster.alive():
            print(node.port, node.run("CLUSTER", "NODES"), file=sys.stderr)
        print((cluster.node(replica["port"]).directory / "log").read_text()[-3000:],
              file=sys.stderr)
        raise TimeoutError("the crashed primary's replica never took over")
    # Every live node knows the promotion before the old primary comes back (empty).
    wait_until(lambda: len({node.run("CLUSTER", "INFO").split("cluster_current_epoch:")[1]
                            .split()[0] for node in cluster.alive()}) == 1
               and all(row["port"] != victim.port for slot in slots
                       for row in [cluster.owner(slot)]),
               "the live nodes agree on the promotion", 60)
    victim.start()
    cluster.wait_ok()
    return how


def hand_over(cluster: Cluster, slots: list[int]) -> int:
    """``CLUSTER FAILOVER`` on the replica of the primary serving most of ``slots``."""
    table = cluster.table()
    owners = Counter(cluster.owner(slot)["id"] for slot in slots)
    primary = owners.most_common(1)[0][0]
    replica = next(row for row in table if row["of"] == primary)

    def took_over() -> bool:
        return any(row["id"] == replica["id"] and row["role"] == "primary"
                   for row in cluster.table())

    for _ in range(3):  # a manual failover gives up if the replica does not catch up in time
        cluster.node(replica["port"]).run("CLUSTER", "FAILOVER")
        try:
            wait_until(took_over, "the replica took over", 20)
            break
        except TimeoutError:
            continue
    else:
        raise TimeoutError("CLUSTER FAILOVER did not happen in 3 tries")
    cluster.wait_ok()
    return int(replica["port"])


# Counting -----------------------------------------------------------------------------

def count(run: Run, stored: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    """Per phase and in all: what each batch's append returned against what is stored."""
    copies: dict[tuple[str, int], int] = defaultdict(int)
    for session, numbers in stored.items():
        for number in numbers:
            copies[(session, number)] += 1
    report: dict[str, Counter[str]] = {phase: Counter() for phase in (*PHASES, "all")}
    for batch in run.batches:
        held = copies.get((batch.session, batch.number), 0)
        for phase in (batch.phase, "all"):
            tally = report[phase]
            tally["batches"] += 1
            tally[batch.outcome] += 1
            tally["duplicated"] += held > 1
            if batch.outcome == "acknowledged":
                tally["lost"] += held == 0
            elif batch.outcome == "reply_lost":
                tally["reply_lost_stored" if held else "reply_lost_not_stored"] += 1
            else:
                tally["failed_but_stored"] += held > 0
    out_of_order = sum(1 for numbers in stored.values()
                       if any(later < earlier for earlier, later in itertools.pairwise(numbers)))
    report["all"]["sessions_out_of_order"] = out_of_order
    keys = ("batches", "acknowledged", "lost", "duplicated", "reply_lost",
            "reply_lost_stored", "reply_lost_not_stored", "unavailable", "failed_but_stored",
            "error")
    result = {phase: {key: tally[key] for key in keys} for phase, tally in report.items()}
    result["all"]["sessions_out_of_order"] = out_of_order
    return result


def read_back(port: int, sessions: list[str]) -> dict[str, list[int]]:
    with redis.RedisCluster(host="127.0.0.1", port=port) as client:
        backend = RedisBackend.from_options(client=client, key_prefix="faults")
        return {session: [int(record["data"]["content"][1:].split("-")[0])
                          for record in backend.fetch(session)[::2]]
                for session in sessions}


def check_catalog(port: int, owners: list[str], stored: dict[str, list[int]]
                  ) -> dict[str, int]:
    """Each owner's listing, page after page, against the sessions' messages."""
    listed: Counter[str] = Counter()
    under: dict[str, str] = {}
    counts: dict[str, int] = {}
    with redis.RedisCluster(host="127.0.0.1", port=port) as client:
        backend = RedisBackend.from_options(client=client, key_prefix="faults")
        for owner in owners:
            cursor = None
            while True:
                page = backend.list_summaries(owner=owner, limit=3, cursor=cursor)
                for summary in page.summaries:
                    listed[summary.session_id] += 1
                    under[summary.session_id] = owner
                    counts[summary.session_id] = summary.messages
                if page.cursor is None:
                    break
                cursor = page.cursor
    held = {session: numbers for session, numbers in stored.items() if numbers}
    return {
        "sessions_with_messages": len(held),
        "unlisted": sum(1 for session in held if session not in listed),
        "listed_twice": sum(1 for times in listed.values() if times > 1),
        "wrong_owner": sum(1 for session in held
                           if session in under and not session.startswith(under[session] + "-")),
        "count_mismatch": sum(1 for session, numbers in held.items()
                              if session in counts and counts[session] != 2 * len(numbers)),
    }


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        raise SystemExit("redis-server and redis-cli are needed")
    directory = Path(tempfile.mkdtemp(prefix="chathistory-cluster-"))
    cluster = Cluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.getLogger("chathistory_redis").setLevel(logging.ERROR)  # a retry each fault
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="length of the calm, kills and reshard phases")
    parser.add_argument("--threads", type=int, default=4, help="sync writers")
    parser.add_argument("--tasks", type=int, default=4, help="async writers")
    parser.add_argument("--sessions", type=int, default=4, help="sessions per writer")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    options = parser.parse_args(argv)
    with private_cluster() as cluster:
        port = cluster.nodes[0].port
        run = Run()
        sync_names = [f"t{number}" for number in range(options.threads)]
        async_names = [f"a{number}" for number in range(options.tasks)]
        sessions = [session for writer in (*sync_names, *async_names)
                    for session in _sessions(writer, options.sessions)]
        # The sessions' slots and the index's: keys alone say them, with no connection.
        probe = RedisBackend.from_options(key_prefix="faults")
        slots = sorted({key_slot(probe.key(session)) for session in sessions}
                       | {key_slot(probe.index_keys[0])})
        writers = [threading.Thread(target=sync_writer,
                                    args=(run, port, name, options.sessions))
                   for name in sync_names]
        writers.append(threading.Thread(target=async_writers,
                                        args=(run, port, async_names, options.sessions)))
        started = time.monotonic()
        for thread in writers:
            thread.start()
        events: dict[str, Any] = {}
        try:
            time.sleep(options.seconds)
            run.phase = "kills"
            events["connections_killed"] = kill_connections(
                cluster, time.monotonic() + options.seconds)
            run.phase = "reshard"
            events["slots_migrated"] = reshard(cluster, slots, time.monotonic() + options.seconds)
            events["keys_after_reshard"] = cluster.keys()
            cluster.wait_ok()
            run.phase = "crash"
            events["crash_failover"] = crash_primary(cluster, slots)
            events["keys_after_crash"] = cluster.keys()
            run.phase = "handover"
            events["promoted_replica"] = hand_over(cluster, slots)
            events["keys_after_handover"] = cluster.keys()
            time.sleep(0.5)
        finally:
            run.stop.set()
            for thread in writers:
                thread.join(60)
        events["seconds"] = round(time.monotonic() - started, 1)
        stored = read_back(port, sessions)
        result = {"counts": count(run, stored), "events": events,
                  "catalog": check_catalog(port, [*sync_names, *async_names], stored),
                  "errors": dict(run.errors.most_common(30))}
        if result["counts"]["all"]["lost"]:  # what the nodes did, to tell why
            for node in cluster.nodes:
                print(f"--- node {node.port}", file=sys.stderr)
                print((node.directory / "log").read_text()[-6000:], file=sys.stderr)
    return result


def _print(result: dict[str, Any]) -> None:
    counts = result["counts"]
    columns = list(counts["all"])
    print(f"{'phase':<10}" + "".join(f"{column:>12.12}" for column in columns))
    for phase, tally in counts.items():
        print(f"{phase:<10}" + "".join(f"{tally.get(column, ''):>12}" for column in columns))
    print("events:", result["events"])
    print("catalog:", result["catalog"])
    for error, times in result["errors"].items():
        print(f"{times:6} x {error}")


if __name__ == "__main__":
    outcome = main()
    if "--json" in sys.argv:
        print(json.dumps(outcome))
    else:
        _print(outcome)
