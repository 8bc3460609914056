"""chathistory-postgres against langchain-postgres's PostgresChatMessageHistory, in one run.

    .venv/bin/python backends/postgres/benchmarks/bench_postgres.py [--rounds 5] [--turns 200]

Needs the PostgreSQL server of CHATHISTORY_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test). Works in a schema of its own,
dropped at the end. Every figure is the median of one operation; within a
round the contenders take turns, one operation each, the order rotating at
every step, so a drift of the server or the disk (a commit's WAL flush swings
30-50% between seconds) lands on all of them alike. A ratio is the median over
the rounds of the ratio within each round. A turn is what a chat server does
per request: build the session's history, read it, append the user's and the
model's messages.

Each operation is timed twice: wall time (perf_counter), and the client's CPU
time (thread_time: this thread's user and system time, which the server's
work and the waits for it leave out). The CPU figure is what the Python side
costs, the part of a turn this package owns; it is stable where the wall
ratio is not.

"same" is raw psycopg running this backend's own statements (its read, its insert
with the session's advisory lock) on one connection, on the same schema: the floor
of issue 18's target (<= 1.15x); "pool" runs them through psycopg_pool (a
ConnectionPool, an AsyncConnectionPool of the backend's async size), taking a
connection per statement with getconn/putconn as the backend does (a read and an
append are two calls of its API, a model's answer apart). pool - same is the
pool's cost, which the backend pays by building on the driver's pool; ours -
pool is the backend's and the core's own. "raw" runs plain statements (a SELECT,
an INSERT ... VALUES).

Targets (issue 10, re-based on the raw driver):
  1. turn on a 20-message session, sync and async: <= 1.15x raw psycopg on one
     autocommit connection doing the same two round trips (one read, one
     insert), and faster than langchain-postgres
  2. turn on a 1,000-message session reading the newest 20: >= 10x faster than the peer
  3. add_messages of 10 messages: within 1.3x of raw psycopg's one-round-trip insert
  4. get_messages(limit=20) on a 100,000-message session: within 2x of a 100-message one

1b (issue 18) runs target 1 as a new user's turns would go: 20 fresh sessions per
round, the round's turns going round them.

What the sessions table's triggers cost (counts and write times, issue 12): raw
psycopg runs the same statements on our schema (triggers included) and on a bare
table of the same columns and index without them ("bare"); the report gives
raw / bare, the triggers' share of a turn and of an append.

The contenders take turns in passes (:data:`PASSES`): ours beside "same", "raw" and
the peer; ours beside "pool"; and the floors beside each other. "pool" runs the very
code "same" runs (and "bare" the very code of "raw"), so beside ours each kept its
twin's code warm in the CPU's caches for the twin's next turn, and not ours (as
bench_sqlite found, commit e83bc62). A contender's figures in a later pass are
named ``name@pass`` (``ours@2``, ``same@3``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import random
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_postgres import PostgresChatMessageHistory
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chathistory import history_factory

URL = os.environ.get("CHATHISTORY_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = f"chathistory_bench_{secrets.token_hex(3)}"
OURS, PEER, BARE = "ours", "peer_lc", "bare"
TURN = [HumanMessage("What is the capital of France?"), AIMessage("Paris.")]
TEN = [HumanMessage(f"question {n}") if n % 2 == 0 else AIMessage(f"answer {n}")
       for n in range(10)]


def history_of(size: int) -> list[BaseMessage]:
    return [HumanMessage(f"user message {n}: how do I do thing {n}?") if n % 2 == 0 else
            AIMessage(f"assistant message {n}: like this, step by step, and then {n}.")
            for n in range(size)]


def median_us(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e6


# -- setup -------------------------------------------------------------------------------


def fill(admin: psycopg.Connection[Any], table: str, session_ids: list[str], size: int,
         uuid_sessions: bool) -> None:
    """Give every session ``size`` messages, in one statement per 200 sessions."""
    records = json.dumps([message_to_dict(message) for message in history_of(size)])
    cast = "uuid" if uuid_sessions else "text"
    statement = sql.SQL(
        "INSERT INTO {t} (session_id, message) SELECT s.id::{cast}, m.value "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS s(id, k), "
        "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS m(value, n) ORDER BY s.k, m.n"
    ).format(t=sql.Identifier(SCHEMA, table), cast=sql.SQL(cast))
    for start in range(0, len(session_ids), 200):
        admin.execute(statement, (session_ids[start:start + 200], records))


def sessions(prefix: str, count: int, uuid_sessions: bool) -> list[str]:
    if uuid_sessions:
        return [str(uuid.uuid4()) for _ in range(count)]
    return [f"{prefix}-{number}" for number in range(count)]


@contextmanager
def benchmark_schema() -> Iterator[psycopg.Connection[Any]]:
    admin = psycopg.connect(URL, autocommit=True)
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    try:
        yield admin
    finally:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
        admin.close()


# -- the contenders ------------------------------------------------------------------------


class Contenders:
    """Ours (through history_factory, as an app uses it), the peer, and raw psycopg."""

    def __init__(self, admin: psycopg.Connection[Any], **ours_options: Any) -> None:
        self.factory = history_factory("postgres", conninfo=URL, schema=SCHEMA,
                                       table=OURS, **ours_options)
        self.factory("warm-up").get_messages(limit=1)  # creates the table, opens the pool
        options = f"-c search_path={SCHEMA}"
        if ours_options.get("synchronous_commit"):
            options += f" -c synchronous_commit={ours_options['synchronous_commit']}"
        self.peer_connection = psycopg.connect(URL, options=options)
        PostgresChatMessageHistory.create_tables(self.peer_connection, PEER)
        self.raw = psycopg.connect(URL, autocommit=True, options=options)
        self.admin = admin
        self.ours_options = ours_options
        bare = sql.Identifier(SCHEMA, BARE)
        admin.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "session_id text NOT NULL, message jsonb NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())").format(t=bare))
        admin.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (session_id, id)").format(
            i=sql.Identifier(f"{BARE}_sid_id_idx"), t=bare))
        self.raw_read, self.raw_insert = self._raw_statements(sql.Identifier(SCHEMA, OURS))
        # What "same" runs: the backend's own statements (its documented attribute).
        self.statements: Any = getattr(self.factory.backend, "statements")  # noqa: B009
        self.bare_read, self.bare_insert = self._raw_statements(bare)
        self.aconnection: psycopg.AsyncConnection[Any] | None = None
        self.araw: psycopg.AsyncConnection[Any] | None = None
        self.options = options
        # The floor through the driver's pool: sized as the backend's own pools.
        config = self.factory.backend.config  # type: ignore[attr-defined]
        self.pool: ConnectionPool[Any] = ConnectionPool(
            URL, kwargs={"autocommit": True, "options": options}, min_size=config.min_size,
            max_size=config.max_size, name="bench-floor", open=True)
        self.pool.wait()
        self.apool: AsyncConnectionPool[Any] | None = None
        self.async_pool_size: int = config.async_pool_size

    @staticmethod
    def _raw_statements(table: sql.Identifier) -> tuple[sql.Composed, dict[int, sql.Composed]]:
        read = sql.SQL("SELECT message FROM {t} WHERE session_id = %s ORDER BY id").format(
            t=table)
        insert = {
            count: sql.SQL("INSERT INTO {t} (session_id, message) VALUES {rows}").format(
                t=table, rows=sql.SQL(", ").join([sql.SQL("(%s, %s::jsonb)")] * count))
            for count in (2, 10)
        }
        return read, insert

    async def open_async(self) -> None:
        self.aconnection = await psycopg.AsyncConnection.connect(URL, options=self.options)
        self.araw = await psycopg.AsyncConnection.connect(URL, autocommit=True,
                                                          options=self.options)
        await self.factory("warm-up").aget_messages(limit=1)
        self.apool = AsyncConnectionPool(
            URL, kwargs={"autocommit": True, "options": self.options},
            min_size=self.async_pool_size, max_size=self.async_pool_size,
            name="bench-afloor", open=False)
        await self.apool.open(wait=True)

    async def close_async(self) -> None:
        assert self.aconnection is not None and self.araw is not None
        assert self.apool is not None
        await self.factory.backend.aclose()
        await self.aconnection.close()
        await self.araw.close()
        await self.apool.close()

    def close(self) -> None:
        self.factory.close()
        self.peer_connection.close()
        self.raw.close()
        self.pool.close()

    # A turn: build the history, read it (the newest `limit`, or all), append two messages.

    def ours_turn(self, session_id: str, limit: int | None) -> None:
        history = self.factory(session_id)
        history.get_messages(limit=limit)
        history.add_messages(TURN)

    def peer_turn(self, session_id: str, limit: int | None) -> None:
        history = PostgresChatMessageHistory(PEER, session_id,
                                             sync_connection=self.peer_connection)
        history.messages  # noqa: B018 - the peer can only read everything
        history.add_messages(TURN)

    def raw_turn(self, session_id: str, limit: int | None, bare: bool = False) -> None:
        read = self.bare_read if bare else self.raw_read
        rows = self.raw.execute(read, (session_id,), prepare=True).fetchall()
        messages_from_dict([row[0] for row in rows])
        self.raw_add(session_id, TURN, bare)

    def same_turn(self, session_id: str, limit: int | None) -> None:
        """Raw psycopg running this backend's own statements: its read, its insert."""
        rows = self.raw.execute(self.statements.select_all, (session_id,),
                                prepare=True).fetchall()
        messages_from_dict(json.loads("[" + ",".join([row[0] for row in rows]) + "]"))
        self.same_add(session_id, TURN)

    def same_add(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        batch = json.dumps([message_to_dict(message) for message in messages])
        self.raw.execute(self.statements.insert, (session_id, session_id, batch), prepare=True)

    def pool_turn(self, session_id: str, limit: int | None) -> None:
        """:meth:`same_turn` through psycopg_pool: a connection per statement."""
        connection = self.pool.getconn()
        try:
            rows = connection.execute(self.statements.select_all, (session_id,),
                                      prepare=True).fetchall()
        finally:
            self.pool.putconn(connection)
        messages_from_dict(json.loads("[" + ",".join([row[0] for row in rows]) + "]"))
        self.pool_add(session_id, TURN)

    def pool_add(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        batch = json.dumps([message_to_dict(message) for message in messages])
        connection = self.pool.getconn()
        try:
            connection.execute(self.statements.insert, (session_id, session_id, batch),
                               prepare=True)
        finally:
            self.pool.putconn(connection)

    async def apool_turn(self, session_id: str, limit: int | None) -> None:
        """:meth:`pool_turn` on the AsyncConnectionPool."""
        assert self.apool is not None
        connection = await self.apool.getconn()
        try:
            cursor = await connection.execute(self.statements.select_all, (session_id,),
                                              prepare=True)
            rows = await cursor.fetchall()
        finally:
            await self.apool.putconn(connection)
        messages_from_dict(json.loads("[" + ",".join([row[0] for row in rows]) + "]"))
        batch = json.dumps([message_to_dict(message) for message in TURN])
        connection = await self.apool.getconn()
        try:
            await connection.execute(self.statements.insert, (session_id, session_id, batch),
                                     prepare=True)
        finally:
            await self.apool.putconn(connection)

    async def asame_turn(self, session_id: str, limit: int | None) -> None:
        assert self.araw is not None
        cursor = await self.araw.execute(self.statements.select_all, (session_id,),
                                         prepare=True)
        rows = await cursor.fetchall()
        messages_from_dict(json.loads("[" + ",".join([row[0] for row in rows]) + "]"))
        batch = json.dumps([message_to_dict(message) for message in TURN])
        await self.araw.execute(self.statements.insert, (session_id, session_id, batch),
                                prepare=True)

    def raw_add(self, session_id: str, messages: Sequence[BaseMessage], bare: bool = False
                ) -> None:
        params: list[Any] = []
        for message in messages:
            params += [session_id, json.dumps(message_to_dict(message))]
        insert = self.bare_insert if bare else self.raw_insert
        self.raw.execute(insert[len(messages)], params, prepare=True)

    def turns(self, asynchronous: bool) -> dict[str, Callable[[str, int | None], Any]]:
        """Each contender's turn (a coroutine function's when ``asynchronous``)."""
        if asynchronous:
            return {"ours": self.aours_turn, "peer": self.apeer_turn, "raw": self.araw_turn,
                    "bare": lambda session_id, limit: self.araw_turn(session_id, limit, True),
                    "same": self.asame_turn, "pool": self.apool_turn}
        return {"ours": self.ours_turn, "peer": self.peer_turn, "raw": self.raw_turn,
                "bare": lambda session_id, limit: self.raw_turn(session_id, limit, True),
                "same": self.same_turn, "pool": self.pool_turn}

    async def aours_turn(self, session_id: str, limit: int | None) -> None:
        history = self.factory(session_id)
        await history.aget_messages(limit=limit)
        await history.aadd_messages(TURN)

    async def apeer_turn(self, session_id: str, limit: int | None) -> None:
        history = PostgresChatMessageHistory(PEER, session_id, async_connection=self.aconnection)
        await history.aget_messages()
        await history.aadd_messages(TURN)

    async def araw_turn(self, session_id: str, limit: int | None, bare: bool = False) -> None:
        assert self.araw is not None
        read, insert = (self.bare_read, self.bare_insert) if bare else \
            (self.raw_read, self.raw_insert)
        cursor = await self.araw.execute(read, (session_id,), prepare=True)
        messages_from_dict([row[0] for row in await cursor.fetchall()])
        params: list[Any] = []
        for message in TURN:
            params += [session_id, json.dumps(message_to_dict(message))]
        await self.araw.execute(insert[2], params, prepare=True)


Operation = Callable[[int], None]
AsyncOperation = Callable[[int], Awaitable[None]]
Medians = dict[str, float]


class Results(NamedTuple):
    """Per contender, one median per round: wall time and the client's CPU time (us)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def _orders(names: list[str], count: int, round_number: int) -> Iterator[list[str]]:
    """The contenders' order at each of ``count`` steps: shuffled anew at every step (the
    same shuffles on every run), so each runs first, last and after each other alike."""
    shuffler = random.Random(round_number)
    order = list(names)
    for _ in range(count):
        shuffler.shuffle(order)
        yield order


def _medians(samples: dict[str, list[int]]) -> Medians:
    return {name: statistics.median(values) / 1000 for name, values in samples.items()}


def measure(operations: dict[str, Operation], count: int, round_number: int
            ) -> tuple[Medians, Medians]:
    """Median wall and CPU time (us) of each contender's operation, ``count`` each.

    The contenders take turns, one operation each per step (see :func:`_orders`):
    a drift of the server, the disk or the machine lands on all of them alike.
    """
    wall: dict[str, list[int]] = {name: [] for name in operations}
    cpu: dict[str, list[int]] = {name: [] for name in operations}
    for index, order in enumerate(_orders(list(operations), count, round_number)):
        for name in order:
            cpu_started, started = time.thread_time_ns(), time.perf_counter_ns()
            operations[name](index)
            ended, cpu_ended = time.perf_counter_ns(), time.thread_time_ns()
            wall[name].append(ended - started)
            cpu[name].append(cpu_ended - cpu_started)
    return _medians(wall), _medians(cpu)


async def ameasure(operations: dict[str, AsyncOperation], count: int, round_number: int
                   ) -> tuple[Medians, Medians]:
    """Async :func:`measure` (the CPU time is the event loop's thread's)."""
    wall: dict[str, list[int]] = {name: [] for name in operations}
    cpu: dict[str, list[int]] = {name: [] for name in operations}
    for index, order in enumerate(_orders(list(operations), count, round_number)):
        for name in order:
            cpu_started, started = time.thread_time_ns(), time.perf_counter_ns()
            await operations[name](index)
            ended, cpu_ended = time.perf_counter_ns(), time.thread_time_ns()
            wall[name].append(ended - started)
            cpu[name].append(cpu_ended - cpu_started)
    return _medians(wall), _medians(cpu)


PASSES = (("ours", "same", "raw", "peer"), ("ours", "pool"), ("same", "pool", "raw", "bare"))
"""The contenders that take turns together: never a floor and its twin beside ours."""


def passes_of(names: Sequence[str]) -> list[dict[str, str]]:
    """:data:`PASSES` of the contenders in ``names`` (a pass needs two), each as its
    contenders' figures' names (``name@pass`` after a contender's first pass) to names."""
    seen: set[str] = set()
    passes = []
    for number, members in enumerate(PASSES, start=1):
        present = [name for name in members if name in names]
        if len(present) >= 2:
            passes.append({(f"{name}@{number}" if name in seen else name): name
                           for name in present})
            seen.update(present)
    return passes


def in_passes(passes: list[dict[str, Operation]], count: int, round_number: int
              ) -> tuple[Medians, Medians]:
    """:func:`measure` of each pass in turn, the figures of all of them."""
    wall: Medians = {}
    cpu: Medians = {}
    for operations in passes:
        some_wall, some_cpu = measure(operations, count, round_number)
        wall.update(some_wall)
        cpu.update(some_cpu)
    return wall, cpu


async def ain_passes(passes: list[dict[str, AsyncOperation]], count: int, round_number: int
                     ) -> tuple[Medians, Medians]:
    """Async :func:`in_passes`."""
    wall: Medians = {}
    cpu: Medians = {}
    for operations in passes:
        some_wall, some_cpu = await ameasure(operations, count, round_number)
        wall.update(some_wall)
        cpu.update(some_cpu)
    return wall, cpu


def collect(rounds: int, one_round: Callable[[int], tuple[Medians, Medians]]) -> Results:
    results = Results({}, {})
    for round_number in range(rounds):
        gc.collect()
        wall, cpu = one_round(round_number)
        for name in wall:
            results.wall.setdefault(name, []).append(wall[name])
            results.cpu.setdefault(name, []).append(cpu[name])
    return results


# -- the scenarios -------------------------------------------------------------------------


def turn_scenario(bench: Contenders, size: int, limit: int | None, rounds: int, turns: int,
                  asynchronous: bool, loop: asyncio.AbstractEventLoop) -> Results:
    """Turns, each on a session of its own that holds ``size`` messages when the turn starts."""
    tag = f"{'a' if asynchronous else 's'}{size}-{secrets.token_hex(2)}"
    count = rounds * turns
    # "same" and "pool" read everything, as the peer does: only when ours does too.
    passes = passes_of(["ours", "peer", "raw", "bare"] + (["same", "pool"] if limit is None
                                                          else []))
    ids = {key: sessions(f"{key}-{tag}", count, name == "peer")
           for figures in passes for key, name in figures.items()}
    for table, which in ((OURS, ("ours", "raw", "same", "pool")), (BARE, ("bare",)),
                         (PEER, ("peer",))):
        fill(bench.admin, table, [session for figures in passes
                                  for key, name in figures.items() if name in which
                                  for session in ids[key]], size, table == PEER)
    bench.admin.execute(sql.SQL("ANALYZE {}, {}, {}").format(
        sql.Identifier(SCHEMA, OURS), sql.Identifier(SCHEMA, PEER), sql.Identifier(SCHEMA, BARE)))
    turn = bench.turns(asynchronous)

    def one_round(round_number: int) -> tuple[Medians, Medians]:
        first = round_number * turns
        operations: list[dict[str, Any]] = [
            {key: functools.partial(_step, turn[name], ids[key], first, limit)
             for key, name in figures.items()} for figures in passes]
        if asynchronous:
            return loop.run_until_complete(ain_passes(operations, turns, round_number))
        return in_passes(operations, turns, round_number)

    return collect(rounds, one_round)


def _step(turn: Callable[[str, int | None], Any], ids: list[str], first: int,
          limit: int | None, index: int) -> Any:
    """``turn`` on the session of step ``index`` (``first`` + ``index`` of ``ids``)."""
    return turn(ids[first + index], limit)


def new_user_scenario(bench: Contenders, rounds: int, turns: int, asynchronous: bool,
                      loop: asyncio.AbstractEventLoop) -> Results:
    """Turns as a new user's would go: 20 fresh (empty) sessions per round, turns going
    round them, so each session's first turn adds its row to the sessions table."""
    passes = passes_of(["ours", "peer", "raw", "bare", "same", "pool"])
    turn = bench.turns(asynchronous)

    def one_round(round_number: int) -> tuple[Medians, Medians]:
        tag = f"{round_number}-{secrets.token_hex(3)}"
        operations: list[dict[str, Any]] = []
        for figures in passes:
            operations.append({})
            for key, name in figures.items():
                ids = sessions(f"new{key}-{tag}", 20, name == "peer")
                operations[-1][key] = functools.partial(_round_of, turn[name], ids)
        if asynchronous:
            return loop.run_until_complete(ain_passes(operations, turns, round_number))
        return in_passes(operations, turns, round_number)

    return collect(rounds, one_round)


def _round_of(turn: Callable[[str, int | None], Any], ids: list[str], index: int) -> Any:
    """``turn`` on session ``index`` % 20 of ``ids``."""
    return turn(ids[index % 20], None)


def add_ten_scenario(bench: Contenders, rounds: int, turns: int) -> Results:
    """add_messages of 10 messages to a session, against raw psycopg and the peer."""
    peer_id = str(uuid.uuid4())

    def add(name: str, key: str) -> Operation:
        session_id = f"ten-{key}"
        if name == "ours":
            return lambda i: bench.factory(session_id).add_messages(TEN)
        if name == "peer":
            return lambda i: PostgresChatMessageHistory(
                PEER, peer_id, sync_connection=bench.peer_connection).add_messages(TEN)
        if name == "same":
            return lambda i: bench.same_add(session_id, TEN)
        if name == "pool":
            return lambda i: bench.pool_add(session_id, TEN)
        return lambda i: bench.raw_add(session_id, TEN, name == "bare")

    operations = [{key: add(name, key) for key, name in figures.items()}
                  for figures in passes_of(["ours", "raw", "same", "pool", "bare", "peer"])]
    return collect(rounds, lambda round_number: in_passes(operations, turns, round_number))


def long_session_scenario(bench: Contenders, rounds: int, turns: int) -> Results:
    """get_messages(limit=20): a 100,000-message session against a 100-message one.

    The long session is written first and 50,000 messages of other sessions after
    it, so its newest rows are not the table's newest: the case where a plan that
    walks the primary key backward would read the whole table.
    """
    fill(bench.admin, OURS, ["long-100000"], 100_000, False)
    fill(bench.admin, OURS, ["short-100"], 100, False)
    fill(bench.admin, OURS, [f"filler-{n}" for n in range(500)], 100, False)
    bench.admin.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SCHEMA, OURS)))
    def newest_20(session_id: str) -> Operation:
        def operation(index: int) -> None:
            bench.factory(session_id).get_messages(limit=20)
        return operation

    operations = {"100000": newest_20("long-100000"), "100": newest_20("short-100")}
    return collect(rounds, lambda round_number: measure(operations, turns, round_number))


def commit_cost(bench: Contenders, turns: int) -> tuple[float, float]:
    """The server's round trip, and a one-row insert with its commit (WAL flush)."""
    probe = sql.Identifier(SCHEMA, "commit_probe")
    bench.raw.execute(sql.SQL("CREATE TABLE {} (n int)").format(probe))
    insert = sql.SQL("INSERT INTO {} VALUES (1)").format(probe)

    def select_one(index: int) -> None:
        bench.raw.execute("SELECT 1", prepare=True)

    def insert_one(index: int) -> None:
        bench.raw.execute(insert, prepare=True)

    times, _ = measure({"select": select_one, "insert": insert_one}, turns, 0)
    return times["select"], times["insert"]


# -- report --------------------------------------------------------------------------------


def show_rounds(label: str, results: Results) -> Results:
    print(f"\n{label}")
    for name, values in results.wall.items():
        rounds = " ".join(f"{value:8.0f}" for value in values)
        print(f"  {name:>8}: rounds {rounds}   median {statistics.median(values):8.0f} us"
              f"   CPU {statistics.median(results.cpu[name]):6.0f} us")
    return results


def cpu_line(label: str, results: Results) -> str:
    """The client's CPU per operation: ours against the floors, and what ours adds."""
    cpu = results.cpu
    added = statistics.median(ours - pool for ours, pool in zip(cpu["ours@2"], cpu["pool"],
                                                                  strict=True))
    return (f"  {label}: client CPU ours / same {ratio(cpu, 'ours', 'same'):.2f}x, "
            f"ours / pool {ratio(cpu, 'ours@2', 'pool'):.2f}x, pool / same "
            f"{ratio(cpu, 'pool@3', 'same@3'):.2f}x; ours - pool {added:.0f} us; wall ours / "
            f"pool {ratio(results.wall, 'ours@2', 'pool'):.2f}x (informational)")


def ratio(results: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of the ratio within each round (robust to drift between rounds)."""
    return statistics.median(
        top / bottom for top, bottom in zip(results[numerator], results[denominator], strict=True))


def verdict(label: str, value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"  {label}: {value:.2f}x (target {sign} {target}x) {'MET' if met else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=200, help="operations per round")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default=None,
                        help="for every contender (off: a commit does not wait for the "
                             "disk, so a busy disk's noise leaves the ratios)")
    args = parser.parse_args()
    rounds, turns = args.rounds, args.turns
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # What is loaded now is never garbage: keep the collector's full passes short.
    gc.collect()
    gc.freeze()
    verdicts: list[str] = []
    with benchmark_schema() as admin:
        server = admin.execute("SHOW server_version").fetchone()
        sync_commit = admin.execute("SHOW synchronous_commit").fetchone()
        print(f"PostgreSQL {server[0] if server else '?'} at {URL.split('@')[-1]}, "
              f"synchronous_commit={sync_commit[0] if sync_commit else '?'}; "
              f"{rounds} rounds x {turns} operations; times are medians per operation")

        shared = {"synchronous_commit": args.synchronous_commit} \
            if args.synchronous_commit else {}
        bench = Contenders(admin, **shared)
        select_us, commit_us = commit_cost(bench, turns)
        print(f"round trip (SELECT 1): {select_us:.0f} us; one-row INSERT with its commit "
              f"(WAL flush): {commit_us:.0f} us. Every turn of every contender commits once.")
        loop.run_until_complete(bench.open_async())

        scenarios: dict[str, tuple[str, Callable[[bool], Results]]] = {
            "1": ("turn on 20 messages", lambda asynchronous: turn_scenario(
                bench, 20, None, rounds, turns, asynchronous, loop)),
            "1b": ("new user's turn, 20 fresh sessions per round", lambda asynchronous:
                   new_user_scenario(bench, rounds, turns, asynchronous, loop)),
        }
        for number, (label, scenario) in scenarios.items():
            for asynchronous in (False, True):
                kind = "async" if asynchronous else "sync"
                summary = show_rounds(f"{number}. {label}, {kind} (us)", scenario(asynchronous))
                verdicts.append(verdict(
                    f"{number}. {label}, {kind}: ours / raw psycopg, our statements",
                    ratio(summary.wall, "ours", "same"), 1.15, False))
                verdicts.append(f"  {number}. {label}, {kind}: ours / raw psycopg on "
                                f"psycopg_pool, our statements: "
                                f"{ratio(summary.wall, 'ours@2', 'pool'):.2f}x; pool / same "
                                f"{ratio(summary.wall, 'pool@3', 'same@3'):.2f}x")
                verdicts.append(cpu_line(f"{number}. {label}, {kind}", summary))
                verdicts.append(f"  {number}. {label}, {kind}: ours / raw psycopg, plain "
                                f"statements: {ratio(summary.wall, 'ours', 'raw'):.2f}x")
                faster = ratio(summary.wall, "peer", "ours")
                verdicts.append(
                    f"  {number}. {label}, {kind}: peer / ours: {faster:.2f}x (target > 1x, "
                    f"faster than the peer) {'MET' if faster > 1 else 'MISSED'}"
                    f"  (peer / raw: {ratio(summary.wall, 'peer', 'raw'):.2f}x)")
                verdicts.append(
                    f"  triggers, {label}, {kind}: raw on our schema / raw on a bare table "
                    f"{ratio(summary.wall, 'raw@3', 'bare'):.2f}x (informational)")

        for asynchronous in (False, True):
            kind = "async" if asynchronous else "sync"
            summary = show_rounds(
                f"2. turn, 1,000-message session, ours reads the newest 20, {kind} (us)",
                turn_scenario(bench, 1000, 20, rounds, max(10, turns // 5), asynchronous, loop))
            verdicts.append(verdict(f"2. turn on 1,000 messages, {kind}: peer / ours",
                                    ratio(summary.wall, "peer", "ours"), 10, True))

        summary = show_rounds("3. add_messages of 10 messages (us)",
                              add_ten_scenario(bench, rounds, turns))
        verdicts.append(verdict("3. add_messages(10): ours / raw psycopg one round trip",
                                ratio(summary.wall, "ours", "raw"), 1.3, False))
        verdicts.append(f"  3. add_messages(10): ours / raw psycopg, our insert: "
                        f"{ratio(summary.wall, 'ours', 'same'):.2f}x; on psycopg_pool "
                        f"{ratio(summary.wall, 'ours@2', 'pool'):.2f}x")
        verdicts.append(cpu_line("3. add_messages(10)", summary))
        verdicts.append(f"  triggers, insert of 10: raw on our schema / raw on a bare table "
                        f"{ratio(summary.wall, 'raw@3', 'bare'):.2f}x (informational)")

        summary = show_rounds("4. get_messages(limit=20) (us)",
                              long_session_scenario(bench, rounds, turns))
        verdicts.append(verdict("4. limit=20: 100,000-message / 100-message session",
                                ratio(summary.wall, "100000", "100"), 2, False))
        loop.run_until_complete(bench.close_async())
        bench.close()

        # Not like-for-like, shown for what it says about the commit: both sides
        # with synchronous_commit=off (a crash of the server may lose the last
        # acknowledged turns, never half a batch).
        relaxed = Contenders(admin, synchronous_commit="off")
        loop.run_until_complete(relaxed.open_async())
        summary = show_rounds(
            "extra: turn, 20-message session, sync, BOTH sides synchronous_commit=off (us)",
            turn_scenario(relaxed, 20, None, rounds, turns, False, loop))
        verdicts.append(f"  extra: with synchronous_commit=off on both sides: peer / ours "
                        f"{ratio(summary.wall, 'peer', 'ours'):.2f}x (informational)")
        loop.run_until_complete(relaxed.close_async())
        relaxed.close()
    loop.close()

    print("\nAgainst the targets:")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
