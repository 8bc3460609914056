"""Benchmark: the redis backend against langchain_community's RedisChatMessageHistory.

Run from the repository root, with Redis on CHATHISTORY_REDIS_URL
(default redis://127.0.0.1:6379/0)::

    .venv/bin/python backends/redis/benchmarks/bench_redis.py [--rounds 5] [--turns 300]

Everything is measured side by side in one run, on the same server, in
interleaved rounds (in the turns, the contenders take one turn each in turn).
Each figure is the median time of one operation over all rounds (the spread of
the per-round medians is shown after it). The targets
(issue 18):

* a turn (build the history for a session, read it, append 2 messages), sync
  and async: at most 1.3x the raw redis-py client on its default pool doing
  the same two round trips with our append script (LRANGE, EVALSHA), the same
  JSON work included. The ratio to the peer is reported, not a target: the
  peer builds a client for every history, as its users do, and its async
  methods are langchain-core's executor fallbacks, measured as they are.
* ``add_messages`` of 10 messages: within 1.3x of raw redis-py running our
  append script (serializing the messages included, as an application must);
  a bare RPUSH is shown too.
* ``get_messages(limit=20)`` on a 100,000-message session: within 2x of the same
  call on a 100-message session.

Raw redis-py (a client on its default pool: one LRANGE, one RPUSH) is printed
for reference, and so is "one bare connection": one redis-py connection held
open doing the same round trips (no pool, no timeouts, no error handling).
So is "one bare connection, indexed": the floor whose append is
the backend's own append script with the keys and arguments the backend sends
(the push, the sessions index and the catalog, one EVALSHA), which is what they
cost before any of the backend's code runs.
The backend's connections come from redis-py's blocking pools with its
default options (``socket_timeout=5``, ``pool_timeout=20``), which
the floor does without.
Keys are written under a random prefix and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from chathistory_redis import keyspace as scripts
from chathistory_redis.keyspace import index_keys
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    message_to_dict,
    messages_from_dict,
)

from chathistory import history_factory

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RedisChatMessageHistory

URL = os.environ.get("CHATHISTORY_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"chbench-{uuid.uuid4().hex[:10]}"
OURS = f"{PREFIX}.ours"             # our layout: chbench-...ours:{session}
PEER = f"{PREFIX}.peer:"            # the peer's: chbench-...peer:session
RAW = f"{PREFIX}.raw:"
HISTORY = 10                        # messages in a session before a turn


def conversation(count: int, tag: str = "") -> list[BaseMessage]:
    return [HumanMessage(f"question {number}{tag}") if number % 2 == 0
            else AIMessage(f"answer {number}{tag}, with a few more words in it")
            for number in range(count)]


def dumps(message: BaseMessage) -> str:
    return json.dumps(message_to_dict(message))


SEED = [dumps(message) for message in conversation(HISTORY)]
TURN = conversation(2, " (new)")


def seed(client: redis.Redis, sessions: list[str]) -> None:
    """HISTORY messages in every session, in each layout's own key and order."""
    pipe = client.pipeline(transaction=False)
    for session in sessions:
        pipe.rpush(f"{OURS}:{{{session}}}", *SEED)
        pipe.lpush(f"{PEER}{session}", *SEED)  # newest first
        pipe.rpush(f"{RAW}{session}", *SEED)
    pipe.execute()


def timed(call: Callable[[str], Any], sessions: list[str]) -> list[float]:
    times = []
    for session in sessions:
        started = time.perf_counter()
        call(session)
        times.append(time.perf_counter() - started)
    return times


def interleaved(contenders: Mapping[str, Callable[[str], Any]],
                sessions: Mapping[str, list[str]]) -> dict[str, list[float]]:
    """Each contender's turn i, then the next's, in a rotating order: a machine whose load
    changes from one moment to the next slows every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for turn in range(len(next(iter(sessions.values())))):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            started = time.perf_counter()
            contenders[name](sessions[name][turn])
            times[name].append(time.perf_counter() - started)
    return times


async def ainterleaved(contenders: Mapping[str, Callable[[str], Awaitable[Any]]],
                       sessions: Mapping[str, list[str]]) -> dict[str, list[float]]:
    """:func:`interleaved`, async."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for turn in range(len(next(iter(sessions.values())))):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            started = time.perf_counter()
            await contenders[name](sessions[name][turn])
            times[name].append(time.perf_counter() - started)
    return times


class Figures:
    """Per-operation times of each contender, kept per round."""

    def __init__(self) -> None:
        self.rounds: dict[str, list[list[float]]] = {}

    def add(self, name: str, times: list[float]) -> None:
        self.rounds.setdefault(name, []).append(times)

    def median(self, name: str) -> float:
        return statistics.median(t for times in self.rounds[name] for t in times)

    def line(self, name: str, label: str) -> str:
        per_round = [statistics.median(times) for times in self.rounds[name]]
        return (f"  {label:<46} {self.median(name) * 1e3:8.3f} ms   "
                f"(rounds {min(per_round) * 1e3:.3f}-{max(per_round) * 1e3:.3f})")


def socket_round_trip(count: int = 2000) -> float:
    """Median time of one PING over a bare socket: this machine's floor for a round trip."""
    parts = urlsplit(URL)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.password:
            sock.sendall(b"AUTH " + (parts.password or "").encode() + b"\r\n")
            sock.recv(100)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(b"PING\r\n")
            sock.recv(100)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def pool_costs(count: int = 5000) -> tuple[dict[str, float], dict[str, float]]:
    """Median cost of taking a connection from redis-py's pools and giving it back.

    The blocking pools are the backend's (a burst waits for a connection
    instead of failing); the plain pools are what the floor's numbers leave out.
    """
    def measure(take: Callable[[], Any], give: Callable[[Any], Any]) -> float:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            give(take())
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    sync: dict[str, float] = {}
    for pool_class in (redis.BlockingConnectionPool, redis.ConnectionPool):
        pool = pool_class.from_url(URL, socket_timeout=5)
        pool.release(pool.get_connection())
        sync[f"sync {pool_class.__name__}"] = measure(pool.get_connection, pool.release)
        pool.disconnect()

    async def measure_async() -> dict[str, float]:
        found: dict[str, float] = {}
        for pool_class in (redis.asyncio.BlockingConnectionPool, redis.asyncio.ConnectionPool):
            pool = pool_class.from_url(URL, socket_timeout=5)
            await pool.release(await pool.get_connection())
            times = []
            for _ in range(count):
                started = time.perf_counter()
                await pool.release(await pool.get_connection())
                times.append(time.perf_counter() - started)
            found[f"async {pool_class.__name__}"] = statistics.median(times)
            await pool.disconnect()
        return found

    return sync, asyncio.run(measure_async())


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=300, help="turns per round and contender")
    args = parser.parse_args()

    raw = redis.Redis(connection_pool=redis.ConnectionPool.from_url(URL))
    try:
        raw.ping()
    except redis.RedisError as exc:
        print(f"Redis at {URL.rpartition('@')[2]} is unreachable: {exc}", file=sys.stderr)
        return 2
    factory = history_factory("redis", url=URL, key_prefix=OURS)
    try:
        return run(args.rounds, args.turns, raw, factory)
    finally:
        factory.close()
        keys = list(raw.scan_iter(match=f"{PREFIX}*", count=1000))
        for start in range(0, len(keys), 1000):
            raw.delete(*keys[start:start + 1000])
        raw.close()


def run(rounds: int, turns: int, raw: redis.Redis, factory: Any) -> int:
    figures = Figures()
    ten = conversation(10, " (batch)")

    # --- turns -----------------------------------------------------------------------------
    def ours_turn(session: str) -> None:
        history = factory(session)
        history.messages  # noqa: B018 - the read is the point
        history.add_messages(TURN)

    def peer_turn(session: str) -> None:
        history = RedisChatMessageHistory(session, url=URL, key_prefix=PEER)
        history.messages  # noqa: B018
        history.add_messages(TURN)

    def raw_turn(session: str) -> None:
        key = f"{RAW}{session}"
        messages_from_dict([json.loads(value) for value in raw.lrange(key, 0, -1)])
        raw.rpush(key, *[dumps(message) for message in TURN])

    # The least any implementation on redis-py can do: one connection held open,
    # no pool, no error handling, one json.loads for the whole list.
    connection = raw.connection_pool.get_connection()

    def floor_turn(session: str) -> None:
        key = f"{RAW}{session}".encode()
        connection.send_packed_command(connection.pack_command("LRANGE", key, 0, -1))
        values = connection.read_response()
        messages_from_dict(json.loads(b"[" + b",".join(values) + b"]"))
        connection.send_packed_command(
            connection.pack_command("RPUSH", key, *[dumps(message) for message in TURN]))
        connection.read_response()

    indexed_keys = index_keys("chathistory", RAW)
    append_script = scripts.APPEND
    connection.send_packed_command(connection.pack_command("SCRIPT", "LOAD", append_script.body))
    connection.read_response()

    def append_call(key: str | bytes, session: str, pushed: list[str]) -> list[Any]:
        """EVALSHA of our append script with the keys and arguments the backend sends:
        the catalog's keys, the session's list; no owner, RPUSH, no expiry."""
        keys = [*indexed_keys.catalog, key]
        return [append_script.sha, len(keys), *keys,
                indexed_keys.owned, "RPUSH", "0", session, len(pushed), *pushed]

    def floor_indexed_turn(session: str) -> None:
        key = f"{RAW}{session}".encode()
        connection.send_packed_command(connection.pack_command("LRANGE", key, 0, -1))
        values = connection.read_response()
        messages_from_dict(json.loads(b"[" + b",".join(values) + b"]"))
        pushed = [dumps(message) for message in TURN]
        connection.send_packed_command(connection.pack_command(
            "EVALSHA", *append_call(key, session, pushed)))
        connection.read_response()

    def raw_indexed_turn(session: str) -> None:
        key = f"{RAW}{session}"
        messages_from_dict([json.loads(value) for value in raw.lrange(key, 0, -1)])
        pushed = [dumps(message) for message in TURN]
        raw.evalsha(*append_call(key, session, pushed))

    async def ours_aturn(session: str) -> None:
        history = factory(session)
        await history.aget_messages()
        await history.aadd_messages(TURN)

    async def peer_aturn(session: str) -> None:
        history = RedisChatMessageHistory(session, url=URL, key_prefix=PEER)
        await history.aget_messages()
        await history.aadd_messages(TURN)

    async def async_rounds() -> None:
        araw = redis.asyncio.Redis(connection_pool=redis.asyncio.ConnectionPool.from_url(URL))

        async def raw_aturn(session: str) -> None:
            key = f"{RAW}{session}"
            messages_from_dict([json.loads(value) for value in await araw.lrange(key, 0, -1)])
            await araw.rpush(key, *[dumps(message) for message in TURN])

        async def raw_indexed_aturn(session: str) -> None:
            key = f"{RAW}{session}"
            messages_from_dict([json.loads(value) for value in await araw.lrange(key, 0, -1)])
            pushed = [dumps(message) for message in TURN]
            await araw.evalsha(*append_call(key, session, pushed))

        aconnection = await araw.connection_pool.get_connection()

        async def floor_aturn(session: str) -> None:
            key = f"{RAW}{session}".encode()
            await aconnection.send_packed_command(aconnection.pack_command("LRANGE", key, 0, -1))
            values = await aconnection.read_response()
            messages_from_dict(json.loads(b"[" + b",".join(values) + b"]"))
            await aconnection.send_packed_command(aconnection.pack_command(
                "RPUSH", key, *[dumps(message) for message in TURN]))
            await aconnection.read_response()

        async def floor_indexed_aturn(session: str) -> None:
            key = f"{RAW}{session}".encode()
            await aconnection.send_packed_command(aconnection.pack_command("LRANGE", key, 0, -1))
            values = await aconnection.read_response()
            messages_from_dict(json.loads(b"[" + b",".join(values) + b"]"))
            pushed = [dumps(message) for message in TURN]
            await aconnection.send_packed_command(aconnection.pack_command(
                "EVALSHA", *append_call(key, session, pushed)))
            await aconnection.read_response()

        acontenders = {"ours async": ours_aturn, "peer async": peer_aturn,
                       "raw async": raw_aturn, "raw indexed async": raw_indexed_aturn,
                       "floor async": floor_aturn, "floor indexed async": floor_indexed_aturn}
        for number in range(rounds + 1):
            asessions = {name: [f"a{number}-{name}-{turn}" for turn in range(turns)]
                         for name in acontenders}
            seed(raw, [session for names in asessions.values() for session in names])
            gc.collect()
            for name, times in (await ainterleaved(acontenders, asessions)).items():
                if number:  # round 0 warms up
                    figures.add(name, times)
        await araw.connection_pool.release(aconnection)
        await araw.aclose()

    contenders = {"ours": ours_turn, "peer": peer_turn, "raw": raw_turn,
                  "raw indexed": raw_indexed_turn, "floor": floor_turn,
                  "floor indexed": floor_indexed_turn}
    for number in range(rounds + 1):
        turn_sessions = {name: [f"s{number}-{name}-{turn}" for turn in range(turns)]
                         for name in contenders}
        seed(raw, [session for names in turn_sessions.values() for session in names])
        gc.collect()
        for name, times in interleaved(contenders, turn_sessions).items():
            if number:
                figures.add(name, times)
        for name, sync_call in (("ours new", ours_turn), ("peer new", peer_turn)):
            sessions = [f"n{number}-{turn}" for turn in range(turns)]  # nothing to read yet
            gc.collect()
            times = timed(sync_call, sessions)
            if number:
                figures.add(name, times)
    asyncio.run(async_rounds())
    # Every contender read HISTORY messages of its own and added 2, no more.
    for key in (f"{OURS}:{{s1-ours-0}}", f"{PEER}s1-peer-0", f"{RAW}s1-raw-0",
                f"{RAW}s1-raw indexed-0", f"{RAW}a1-raw indexed async-0",
                f"{RAW}s1-floor-0", f"{OURS}:{{a1-ours async-0}}", f"{PEER}a1-peer async-0",
                f"{RAW}a1-floor async-0", f"{RAW}s1-floor indexed-0",
                f"{RAW}a1-floor indexed async-0"):
        assert raw.llen(key) == HISTORY + 2, key

    # --- add_messages(10) ------------------------------------------------------------------
    def ours_add(session: str) -> None:
        factory(session).add_messages(ten)

    def raw_add(session: str) -> None:
        raw.rpush(f"{RAW}{session}", *[dumps(message) for message in ten])

    def raw_indexed_add(session: str) -> None:
        pushed = [dumps(message) for message in ten]
        raw.evalsha(*append_call(f"{RAW}i{session}", session, pushed))

    adders = {"ours add10": ours_add, "raw add10": raw_add,
              "raw indexed add10": raw_indexed_add}
    for number in range(rounds + 1):
        gc.collect()
        add_sessions = {name: [f"add{number}-{turn % 20}" for turn in range(turns)]
                        for name in adders}
        for name, times in interleaved(adders, add_sessions).items():
            if number:
                figures.add(name, times)

    # --- get_messages(limit=20): 100 vs 100,000 messages ---------------------------------------
    values = [dumps(message) for message in conversation(1000, " (long)")]
    for session, size in (("small", 100), ("big", 100_000)):
        pipe = raw.pipeline(transaction=False)
        for _ in range(size // 1000 or 1):
            pipe.rpush(f"{OURS}:{{{session}}}", *values[:min(size, 1000)])
            pipe.lpush(f"{PEER}{session}", *values[:min(size, 1000)])
        pipe.execute()
    assert raw.llen(f"{OURS}:{{big}}") == 100_000 and raw.llen(f"{OURS}:{{small}}") == 100
    for number in range(rounds + 1):
        for name, session in (("limit20 small", "small"), ("limit20 big", "big")):
            gc.collect()
            times = timed(lambda session: factory(session).get_messages(limit=20),
                          [session] * turns)
            if number:
                figures.add(name, times)
    started = time.perf_counter()
    peer_all = len(RedisChatMessageHistory("big", url=URL, key_prefix=PEER).messages)
    peer_big = time.perf_counter() - started
    assert peer_all == 100_000

    # --- report ----------------------------------------------------------------------------
    median = figures.median
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure Python"
    print(f"redis-py {redis.__version__} ({parser} parser, for every contender), "
          f"Redis at {URL.rpartition('@')[2]}, {rounds} rounds "
          f"x {turns} operations each (after a warm-up round); median per operation")
    print(f"One round trip on this machine (PING over a bare socket): "
          f"{socket_round_trip() * 1e6:.0f} us. A turn of ours is 2 round trips, the peer's "
          f"6 (a new connection, HELLO, INFO, LRANGE, LPUSH x2).\n")
    print(f"Turn: build the history, read it ({HISTORY} messages), append 2 messages")
    for name, label in (("ours", "chathistory redis, sync"),
                        ("peer", "RedisChatMessageHistory, sync"),
                        ("raw", "raw redis-py (LRANGE + RPUSH), sync"),
                        ("raw indexed", "raw redis-py, our append script, sync"),
                        ("floor", "one bare redis-py connection, sync"),
                        ("floor indexed", "bare connection, our append script, sync"),
                        ("ours async", "chathistory redis, async"),
                        ("peer async", "RedisChatMessageHistory, async (executor)"),
                        ("raw async", "raw redis.asyncio (LRANGE + RPUSH)"),
                        ("raw indexed async", "raw redis.asyncio, our append script"),
                        ("floor async", "one bare redis.asyncio connection"),
                        ("floor indexed async", "bare connection, our append script, async")):
        print(figures.line(name, label))
    sync_raw = median("ours") / median("raw indexed")
    async_raw = median("ours async") / median("raw indexed async")
    sync_ratio = median("peer") / median("ours")
    async_ratio = median("peer async") / median("ours async")
    print(f"  -> sync:  ours / raw redis-py with our append script = {sync_raw:4.2f}x   "
          f"(target <= 1.3x: {verdict(sync_raw <= 1.3)})")
    print(f"  -> async: ours / raw redis.asyncio with our append script = {async_raw:4.2f}x   "
          f"(target <= 1.3x: {verdict(async_raw <= 1.3)})")
    print(f"  -> ours / one bare connection = {median('ours') / median('floor'):4.2f}x sync, "
          f"{median('ours async') / median('floor async'):4.2f}x async")
    print(f"  -> peer / ours = {sync_ratio:5.1f}x sync, {async_ratio:5.1f}x async")
    print(f"  -> the index's own cost: indexed floor / floor = "
          f"{median('floor indexed') / median('floor'):.2f}x sync, "
          f"{median('floor indexed async') / median('floor async'):.2f}x async; "
          f"ours / indexed floor = {median('ours') / median('floor indexed'):.2f}x sync, "
          f"{median('ours async') / median('floor indexed async'):.2f}x async")
    pool_sync, pool_async = pool_costs()
    print("  -> redis-py's pools, one get_connection + release (median, us): "
          + ", ".join(f"{name} {cost * 1e6:.1f}" for name, cost in
                      [*pool_sync.items(), *pool_async.items()])
          + "; a turn takes two")
    print(f"  -> ours / raw redis-py: sync {median('ours') / median('raw'):.2f}x, "
          f"async {median('ours async') / median('raw async'):.2f}x")
    print(f"  -> peer / one bare connection, sync = {median('peer') / median('floor'):.1f}x "
          "(the most any implementation on redis-py can reach here)")
    print("For reference, the first turn of a new session (nothing to read yet), sync")
    print(figures.line("ours new", "chathistory redis"))
    print(figures.line("peer new", "RedisChatMessageHistory"))
    print(f"  -> peer / ours = {median('peer new') / median('ours new'):5.1f}x")

    print("\nadd_messages of 10 messages")
    print(figures.line("ours add10", "chathistory redis, add_messages(10)"))
    print(figures.line("raw add10", "raw redis-py, json.dumps x10 + one RPUSH"))
    print(figures.line("raw indexed add10", "raw redis-py, json.dumps x10 + our append script"))
    add_ratio = median("ours add10") / median("raw indexed add10")
    print(f"  -> ours / raw with our append script = {add_ratio:.2f}x   "
          f"(target <= 1.3x: {verdict(add_ratio <= 1.3)}); "
          f"ours / bare RPUSH = {median('ours add10') / median('raw add10'):.2f}x")

    print("\nget_messages(limit=20)")
    print(figures.line("limit20 small", "on a 100-message session"))
    print(figures.line("limit20 big", "on a 100,000-message session"))
    limit_ratio = median("limit20 big") / median("limit20 small")
    print(f"  -> 100,000 / 100 = {limit_ratio:.2f}x   "
          f"(target <= 2x: {verdict(limit_ratio <= 2)})")
    print(f"  (the peer has no limit: reading the 100,000-message session takes it "
          f"{peer_big * 1e3:.0f} ms, once)")
    met = sync_raw <= 1.3 and async_raw <= 1.3 and add_ratio <= 1.3 and limit_ratio <= 2
    print(f"\nall targets {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
