"""SQLite: chathistory against langchain_community's SQLChatMessageHistory and raw sqlite3.

Run: .venv/bin/python tests/benchmarks/bench_sqlite.py [--rounds 5]

Every figure is measured in this one process, on files in one temporary
directory. Within a round the contenders take turns, one operation each per
step, in an order shuffled anew at every step (the same shuffles on every
run), as bench_postgres does: a burst of load on the shared machine, or a
drift of the disk, lands on all of them alike. (Run in blocks, contender after
contender, bench_postgres's ratios swung 0.94-1.41x between runs.)

Each operation is timed twice: wall time (perf_counter) and this thread's CPU
time (thread_time). A round's figure is the median of its operations; a ratio
is the median over the rounds of the ratio within each round.

A turn is what a chat server does per request: build the session's history,
read it, append the user's and the model's messages. "raw" is sqlite3 written
by hand doing the same statements as ours (one SELECT; BEGIN IMMEDIATE, one
executemany INSERT, COMMIT) with the same pragmas and the same conversion
(message_to_dict, compact JSON; json.loads, messages_from_dict), on a table
chathistory created, so its inserts fire the same triggers. "bare" is raw on a
table without the sessions table and its triggers; it runs the very code raw
runs, so it takes turns with raw alone, in a pass of its own: beside ours, it
kept raw's code warm in the CPU's caches for raw's next turn and not ours
(ours / raw read 1.25-1.28x with it, 1.18x without, in one hour at load 2-3).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    message_to_dict,
    messages_from_dict,
)

from chathistory import ChatHistory, history_factory
from chathistory.backend import ensure_collection
from chathistory.backends.sqlite import SqliteBackend

warnings.filterwarnings("ignore", category=DeprecationWarning)

SESSIONS, TURNS = 25, 10
Step = Callable[[int], object]
"""One operation of a contender; it gets the step's number."""


def human(n: int) -> HumanMessage:
    return HumanMessage(f"question {n}: what is the answer to this one?")


def ai(n: int) -> AIMessage:
    return AIMessage(f"answer {n}: here is a reasonably sized reply to the question.")


def pair(index: int) -> tuple[str, list[BaseMessage]]:
    """Step ``index``'s session and messages: turn ``index // SESSIONS`` of session
    ``index % SESSIONS``, so the sessions grow alike (0 to 18 messages read)."""
    number = index // SESSIONS
    return f"session-{index % SESSIONS}", [human(number), ai(number)]


class RawSqlite:
    """What a hand-written store does: same statements, same pragmas, same conversion.

    With ``same_schema`` it writes to a table that chathistory created, so its
    inserts also fire the triggers that keep the sessions table (counts and
    write times); without, to a bare table, which shows what those cost.
    """

    def __init__(self, path: str, *, same_schema: bool = True) -> None:
        if same_schema:
            schema = SqliteBackend(SqliteBackend.Config(path=path))
            schema.create_collection()
            schema.close()
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        if not same_schema:  # chathistory's table has its index on (session_id, id)
            self.connection.executescript(
                "CREATE TABLE message_store (id INTEGER PRIMARY KEY, "
                "session_id TEXT NOT NULL, message TEXT NOT NULL);"
                "CREATE INDEX ix ON message_store (session_id, id);")

    def read(self, session_id: str) -> list[BaseMessage]:
        rows = self.connection.execute(
            "SELECT message FROM message_store WHERE session_id = ? ORDER BY id",
            (session_id,)).fetchall()
        return messages_from_dict([json.loads(row[0]) for row in rows])

    def write(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        rows = [(session_id, json.dumps(message_to_dict(m), ensure_ascii=False,
                                        separators=(",", ":"))) for m in messages]
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.executemany(
            "INSERT INTO message_store (session_id, message) VALUES (?, ?)", rows)
        self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()


class Results(NamedTuple):
    """Per contender, one median per round: wall time and this thread's CPU time (us)."""

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


def measure(steps: dict[str, Step], count: int, round_number: int, results: Results) -> None:
    """Add each contender's median wall and CPU time (us) over ``count`` steps to ``results``."""
    wall: dict[str, list[int]] = {name: [] for name in steps}
    cpu: dict[str, list[int]] = {name: [] for name in steps}
    for index, order in enumerate(_orders(list(steps), count, round_number)):
        for name in order:
            cpu_started, started = time.thread_time_ns(), time.perf_counter_ns()
            steps[name](index)
            ended, cpu_ended = time.perf_counter_ns(), time.thread_time_ns()
            wall[name].append(ended - started)
            cpu[name].append(cpu_ended - cpu_started)
    for name in steps:
        results.wall.setdefault(name, []).append(statistics.median(wall[name]) / 1000)
        results.cpu.setdefault(name, []).append(statistics.median(cpu[name]) / 1000)


def round_of_turns(directory: Path, round_number: int, results: Results) -> None:
    """SESSIONS x TURNS turns of each contender, as :func:`pair` numbers them."""
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    peer_url = f"sqlite:///{directory / f'peer-{round_number}.sqlite3'}"
    factory = history_factory("sqlite", path=str(directory / f"ours-{round_number}.sqlite3"))
    # Set up before timing, as the raw contenders' tables are: an app does it once.
    ensure_collection(factory.backend)
    raw = RawSqlite(str(directory / f"raw-{round_number}.sqlite3"))

    def peer_turn(index: int) -> None:
        session_id, messages = pair(index)
        history = SQLChatMessageHistory(session_id, connection=peer_url)
        history.messages  # noqa: B018 - reading is the point
        history.add_messages(messages)

    def our_turn(index: int) -> None:
        session_id, messages = pair(index)
        history = factory(session_id)
        history.messages  # noqa: B018
        history.add_messages(messages)

    measure({"ours": our_turn, "raw": _turn_of(raw), "peer": peer_turn},
            SESSIONS * TURNS, round_number, results)
    factory.close()
    raw.close()


def _turn_of(store: RawSqlite) -> Step:
    def turn(index: int) -> None:
        session_id, messages = pair(index)
        store.read(session_id)
        store.write(session_id, messages)
    return turn


def round_of_counting(directory: Path, round_number: int, results: Results) -> None:
    """Raw turns on chathistory's schema against the same on a bare table: what the
    sessions table's triggers cost."""
    raw = RawSqlite(str(directory / f"count-raw-{round_number}.sqlite3"))
    bare = RawSqlite(str(directory / f"count-bare-{round_number}.sqlite3"), same_schema=False)

    measure({"raw": _turn_of(raw), "bare": _turn_of(bare)},
            SESSIONS * TURNS, round_number, results)
    raw.close()
    bare.close()


def round_of_batches(directory: Path, round_number: int, results: Results) -> None:
    """add_messages of 10 messages to one session, against raw sqlite3's one executemany."""
    batch = [m for n in range(5) for m in (human(n), ai(n))]
    history = ChatHistory("batch", backend="sqlite",
                          path=str(directory / f"batch-ours-{round_number}.sqlite3"))
    raw = RawSqlite(str(directory / f"batch-raw-{round_number}.sqlite3"))
    history.add_messages(batch)
    raw.write("batch", batch)
    measure({"ours": lambda _: history.add_messages(batch),
             "raw": lambda _: raw.write("batch", batch)}, 300, round_number, results)
    history.close()
    raw.close()


def round_of_limit_reads(directory: Path, round_number: int, results: Results) -> None:
    """get_messages(limit=20) on a 100,000-message session and on a 100-message one."""
    get_history = history_factory("sqlite", path=str(directory / f"long-{round_number}.sqlite3"))
    records = [message_to_dict(human(n)) for n in range(1000)]
    ensure_collection(get_history.backend)
    for _ in range(100):
        get_history.backend.append("long", records)
    get_history.backend.append("short", records[:100])
    # Noise between the two sessions so neither sits in one contiguous block.
    get_history.backend.append("other", records)
    short, long = get_history("short"), get_history("long")
    assert len(short.get_messages(limit=20)) == len(long.get_messages(limit=20)) == 20
    measure({"100": lambda _: short.get_messages(limit=20),
             "100000": lambda _: long.get_messages(limit=20)}, 2000, round_number, results)
    get_history.close()


def ratio(results: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of the ratio within each round (robust to drift between rounds)."""
    return statistics.median(
        top / bottom for top, bottom in zip(results[numerator], results[denominator], strict=True))


def show(label: str, results: Results) -> None:
    print(label)
    for name, values in results.wall.items():
        rounds = " ".join(f"{value:7.0f}" for value in values)
        print(f"  {name:>6}: rounds {rounds}   median {statistics.median(values):7.0f} us"
              f"   CPU {statistics.median(results.cpu[name]):7.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    # What is loaded now is never garbage: keep the collector's full passes short.
    gc.collect()
    gc.freeze()
    turns, counting = Results({}, {}), Results({}, {})
    batches, limits = Results({}, {}), Results({}, {})
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for number in range(rounds):
            round_of_turns(directory, number, turns)
            round_of_counting(directory, number, counting)
            round_of_batches(directory, number, batches)
            round_of_limit_reads(directory, number, limits)
            gc.collect()

    print(f"{rounds} rounds; times are medians per operation (us), interleaved")
    show(f"turn ({SESSIONS} sessions x {TURNS} turns a round)", turns)
    print(f"  peer / ours = {ratio(turns.wall, 'peer', 'ours'):6.1f}x   (target >= 20x)")
    print(f"  ours / raw  = {ratio(turns.wall, 'ours', 'raw'):6.2f}x   (target <= 1.2x)"
          f"   CPU {ratio(turns.cpu, 'ours', 'raw'):.2f}x")
    show("turn, raw sqlite3 on chathistory's schema and on a bare table (no sessions)",
         counting)
    print(f"  raw / bare  = {ratio(counting.wall, 'raw', 'bare'):6.2f}x   "
          "(what counting sessions costs)")
    show("add_messages of 10 (300 a round)", batches)
    print(f"  ours / raw  = {ratio(batches.wall, 'ours', 'raw'):6.2f}x   (target <= 1.2x)"
          f"   CPU {ratio(batches.cpu, 'ours', 'raw'):.2f}x")
    show("get_messages(limit=20) (2000 a round)", limits)
    print(f"  long / short = {ratio(limits.wall, '100000', '100'):6.2f}x   (target <= 2x)")


if __name__ == "__main__":
    main()
