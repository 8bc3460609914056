"""create_agent memory: ChatHistoryMiddleware against LangGraph's checkpointers.

Run: .venv/bin/python tests/benchmarks/bench_agents.py [--turns 100] [--rounds 3] [--postgres URL]

One conversation shape for every contender, in one process: ``create_agent``
with one tool and a scripted model (no network), TURNS turns of
human -> AI tool call -> tool result -> AI answer on one session. Contenders:

- the middleware (no checkpointer) on the sqlite and postgres backends, with
  ``window=40`` and with no window;
- ``SqliteSaver`` and ``PostgresSaver``, at their default durability and at
  ``durability="exit"``, each with the default agent state and with LangGraph
  1.2's ``DeltaChannel`` for the messages (beta, opt-in through the agent's
  ``state_schema``), which stores each checkpoint's new messages only.

Reported: rows and bytes stored after 20 turns and after all turns, and the
median milliseconds per turn for turns 1-20 and for the last 20. Each round
runs every contender's whole conversation afresh, one contender after the
other; a turn's time is its median over the rounds, so a burst of load on the
machine skews one round, not the figure. Bytes are
what the tables hold: on SQLite the length of every stored value, on
PostgreSQL ``pg_column_size`` of every row. PostgreSQL contenders run in a
schema of their own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentState
from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import _messages_delta_reducer

from chathistory.agents import ChatHistoryMiddleware
from chathistory.backend import ensure_collection
from chathistory.testing.chat_models import ToolCallingFakeModel, call_tool_then_answer

FIRST, LAST = 20, 20


class DeltaState(AgentState[Any]):
    """The agent state with its messages in a DeltaChannel, as LangGraph 1.2 documents it."""

    messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer)]  # type: ignore[misc]

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@tool
def lookup_order(order: str) -> str:
    """The status of an order."""
    return (f"Order {order}: shipped from the Lyon warehouse on Monday, carrier tracking "
            "number 1Z999AA10123456784, expected delivery Thursday between 9:00 and 12:00, "
            "signature required; two items, one back-ordered until next week.")


def model() -> ToolCallingFakeModel:
    return ToolCallingFakeModel(respond=call_tool_then_answer(
        "lookup_order", lambda text: {"order": text.split()[-1].rstrip("?")},
        lambda result: f"Here is what I found. {result} Anything else I can check for you?"))


def question(turn: int) -> dict[str, Any]:
    return {"messages": [HumanMessage(
        f"Hello again, could you tell me where my order is? It is order A-{1000 + turn}?")]}


@dataclass
class Result:
    name: str
    store: str
    rows: dict[int, int]
    bytes: dict[int, int]
    ms_first: float
    ms_last: float
    slowest_first: float
    ms_all: list[float]


Measure = Callable[[], tuple[int, int]]


def run(name: str, store: str, agent: Any, invoke_options: dict[str, Any], measure: Measure,
        turns: int) -> Result:
    rows, sizes, times = {}, {}, []
    for turn in range(1, turns + 1):
        started = time.perf_counter()
        agent.invoke(question(turn), **invoke_options)
        times.append((time.perf_counter() - started) * 1000)
        if turn in (FIRST, turns):
            rows[turn], sizes[turn] = measure()
    return Result(name, store, rows, sizes, statistics.median(times[:FIRST]),
                  statistics.median(times[-LAST:]), max(times[:FIRST]), times)


# -- measuring what a store holds --------------------------------------------------------


def sqlite_measure(path: str, tables: list[str]) -> Measure:
    def measure() -> tuple[int, int]:
        connection = sqlite3.connect(path)
        try:
            rows = size = 0
            for table in tables:
                for row in connection.execute(f'SELECT * FROM "{table}"'):
                    rows += 1
                    size += sum(len(value.encode() if isinstance(value, str) else value)
                                if isinstance(value, str | bytes) else 8
                                for value in row if value is not None)
            return rows, size
        finally:
            connection.close()
    return measure


def postgres_measure(url: str, schema: str) -> Measure:
    import psycopg

    def measure() -> tuple[int, int]:
        with psycopg.connect(url, autocommit=True) as connection:
            tables = [name for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name <> 'checkpoint_migrations'", (schema,))]
            rows = size = 0
            for table in tables:
                count, total = connection.execute(
                    f'SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) '
                    f'FROM "{schema}"."{table}" t').fetchone() or (0, 0)
                rows += count
                size += total
            return rows, size
    return measure


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    import psycopg

    schema = f"bench_agents_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


# -- the contenders --------------------------------------------------------------------


def middleware_on_sqlite(directory: Path, turns: int, window: int | None) -> Result:
    path = str(directory / f"middleware-{window}.sqlite3")
    middleware = ChatHistoryMiddleware("sqlite", path=path, window=window)
    ensure_collection(middleware.backend)  # set-up, as saver.setup() is for the checkpointers
    agent = create_agent(model(), [lookup_order], middleware=[middleware])
    try:
        return run(f"ChatHistoryMiddleware, window={window}", "sqlite", agent,
                   {"context": {"session_id": "bench"}},
                   sqlite_measure(path, ["message_store"]), turns)
    finally:
        middleware.close()


def saver_agent(saver: Any, delta: bool) -> Any:
    if delta:
        return create_agent(model(), [lookup_order], checkpointer=saver, state_schema=DeltaState)
    return create_agent(model(), [lookup_order], checkpointer=saver)


def saver_name(saver: str, durability: str | None, delta: bool) -> str:
    return f"{saver}{' + DeltaChannel' if delta else ''}, durability={durability or 'default'}"


def sqlite_saver(directory: Path, turns: int, durability: str | None, delta: bool = False
                 ) -> Result:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = str(directory / f"saver-{durability}-{delta}.sqlite3")
    manager: AbstractContextManager[Any] = SqliteSaver.from_conn_string(path)
    with manager as saver:
        saver.setup()
        agent = saver_agent(saver, delta)
        options: dict[str, Any] = {"config": {"configurable": {"thread_id": "bench"}}}
        if durability:
            options["durability"] = durability
        return run(saver_name("SqliteSaver", durability, delta), "sqlite", agent,
                   options, sqlite_measure(path, ["checkpoints", "writes"]), turns)


def middleware_on_postgres(url: str, turns: int, window: int | None) -> Result:
    with postgres_schema(url) as schema:
        middleware = ChatHistoryMiddleware("postgres", conninfo=url, schema=schema,
                                           window=window)
        ensure_collection(middleware.backend)
        agent = create_agent(model(), [lookup_order], middleware=[middleware])
        try:
            return run(f"ChatHistoryMiddleware, window={window}", "postgres", agent,
                       {"context": {"session_id": "bench"}},
                       postgres_measure(url, schema), turns)
        finally:
            middleware.close()


def postgres_saver(url: str, turns: int, durability: str | None, delta: bool = False
                   ) -> Result:
    from langgraph.checkpoint.postgres import PostgresSaver

    with postgres_schema(url) as schema, \
            PostgresSaver.from_conn_string(with_search_path(url, schema)) as saver:
        saver.setup()
        agent = saver_agent(saver, delta)
        options: dict[str, Any] = {"config": {"configurable": {"thread_id": "bench"}}}
        if durability:
            options["durability"] = durability
        return run(saver_name("PostgresSaver", durability, delta), "postgres",
                   agent, options, postgres_measure(url, schema), turns)


# -- the report ------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def combine(rounds: list[Result]) -> Result:
    """One result per contender: each turn's median time over the rounds."""
    times = [statistics.median(values) for values in zip(*(r.ms_all for r in rounds),
                                                          strict=True)]
    last = rounds[-1]
    return Result(last.name, last.store, last.rows, last.bytes,
                  statistics.median(times[:FIRST]), statistics.median(times[-LAST:]),
                  max(times[:FIRST]), times)


def report(results: list[Result], turns: int) -> None:
    print(f"{'contender':<48} {'store':<9} {'rows@20':>8} {'rows@' + str(turns):>9} "
          f"{'bytes@20':>10} {'bytes@' + str(turns):>11} {'ms 1-20':>8} "
          f"{'ms last 20':>10}")
    for result in results:
        print(f"{result.name:<48} {result.store:<9} {result.rows[FIRST]:>8} "
              f"{result.rows[turns]:>9} {mib(result.bytes[FIRST]):>10} "
              f"{mib(result.bytes[turns]):>11} {result.ms_first:>8.2f} {result.ms_last:>10.2f}")
    print()
    for store in sorted({result.store for result in results}):
        ours = next(r for r in results if r.store == store and r.name.endswith("window=40"))
        savers = [r for r in results if r.store == store and "Saver" in r.name]
        for saver in savers:
            ratio = saver.bytes[turns] / ours.bytes[turns]
            faster = sum(o < c for o, c in zip(ours.ms_all[-LAST:], saver.ms_all[-LAST:],
                                               strict=True))
            print(f"{store}: {saver.name}: stores {ratio:.1f}x the middleware's bytes; "
                  f"middleware faster at {faster} of the last {LAST} turns "
                  f"({saver.ms_last / ours.ms_last:.1f}x the middleware's median ms)")
        delta_exit = next(r for r in savers if "DeltaChannel" in r.name and "exit" in r.name)
        beaten = [sum(o < c for o, c in zip(ours.ms_all[-LAST:], saver.ms_all[-LAST:],
                                            strict=True)) for saver in savers]
        print(f"{store}: targets: DeltaChannel at exit / middleware bytes = "
              f"{delta_exit.bytes[turns] / ours.bytes[turns]:.2f}x (>= 2x); middleware faster "
              f"than every checkpointer at {min(beaten)} of the last {LAST} turns (target: "
              f"all); middleware last 20 / first 20 = {ours.ms_last / ours.ms_first:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("CHATHISTORY_POSTGRES_URL",
                                                             DEFAULT_POSTGRES),
                        help="a PostgreSQL URL, or 'none' to skip PostgreSQL")
    arguments = parser.parse_args()
    turns = arguments.turns
    if turns < FIRST + LAST:
        parser.error(f"--turns must be at least {FIRST + LAST}: turns 1-{FIRST} and the "
                     f"last {LAST} are measured apart")
    contenders: list[Callable[[Path], Result]] = [
        lambda folder: middleware_on_sqlite(folder, turns, 40),
        lambda folder: middleware_on_sqlite(folder, turns, None),
        lambda folder: sqlite_saver(folder, turns, None),
        lambda folder: sqlite_saver(folder, turns, "exit"),
        lambda folder: sqlite_saver(folder, turns, None, delta=True),
        lambda folder: sqlite_saver(folder, turns, "exit", delta=True),
    ]
    if arguments.postgres != "none":
        url = arguments.postgres
        contenders += [
            lambda _: middleware_on_postgres(url, turns, 40),
            lambda _: middleware_on_postgres(url, turns, None),
            lambda _: postgres_saver(url, turns, None),
            lambda _: postgres_saver(url, turns, "exit"),
            lambda _: postgres_saver(url, turns, None, delta=True),
            lambda _: postgres_saver(url, turns, "exit", delta=True),
        ]
    rounds: list[list[Result]] = [[] for _ in contenders]
    for _ in range(arguments.rounds):
        with tempfile.TemporaryDirectory() as directory:
            for position, contender in enumerate(contenders):
                rounds[position].append(contender(Path(directory)))
    results = [combine(runs) for runs in rounds]
    print(f"create_agent, one tool, {turns} turns on one session "
          f"(human -> AI tool call -> tool -> AI), {arguments.rounds} rounds\n")
    report(results, turns)


if __name__ == "__main__":
    main()
