"""SQLite: chathistory against langchain_community's SQLChatMessageHistory and raw sqlite3.

Run: .venv/bin/python tests/benchmarks/bench_sqlite.py [--rounds 5]

Every figure is the median over rounds of the mean time per operation, all
measured in this one process, on files in one temporary directory; within a
round the turn contenders take turns, one turn of every session each.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, message_to_dict, messages_from_dict

from chathistory import ChatHistory, history_factory
from chathistory.backend import ensure_collection
from chathistory.backends.sqlite import SqliteBackend

warnings.filterwarnings("ignore", category=DeprecationWarning)

SESSIONS, TURNS = 25, 10


def human(n: int) -> HumanMessage:
    return HumanMessage(f"question {n}: what is the answer to this one?")


def ai(n: int) -> AIMessage:
    return AIMessage(f"answer {n}: here is a reasonably sized reply to the question.")


def timed_turns(contenders: Sequence[tuple[str, Callable[[str, int], None]]]
                ) -> dict[str, float]:
    """Mean seconds per turn of each contender over SESSIONS x TURNS turns.

    The contenders take turns: each plays turn ``number`` of every session
    (round-robin over sessions), then the next contender does, so a burst of
    load on a shared machine falls on all of them alike.
    """
    spent = dict.fromkeys((name for name, _ in contenders), 0.0)
    for number in range(TURNS):
        for name, turn in contenders:
            started = time.perf_counter()
            for session in range(SESSIONS):
                turn(f"session-{session}", number)
            spent[name] += time.perf_counter() - started
    return {name: total / (SESSIONS * TURNS) for name, total in spent.items()}


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
        self.connection.executescript(
            "CREATE TABLE IF NOT EXISTS message_store (id INTEGER PRIMARY KEY, "
            "session_id TEXT NOT NULL, message TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS ix ON message_store (session_id, id);")

    def read(self, session_id: str) -> Sequence[object]:
        rows = self.connection.execute(
            "SELECT message FROM message_store WHERE session_id = ? ORDER BY id",
            (session_id,)).fetchall()
        return messages_from_dict([json.loads(row[0]) for row in rows])

    def write(self, session_id: str, messages: list[object]) -> None:
        rows = [(session_id, json.dumps(message_to_dict(m), ensure_ascii=False,  # type: ignore[arg-type]
                                        separators=(",", ":"))) for m in messages]
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.executemany(
            "INSERT INTO message_store (session_id, message) VALUES (?, ?)", rows)
        self.connection.execute("COMMIT")


def round_of_turns(directory: Path, round_number: int) -> dict[str, float]:
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    peer_url = f"sqlite:///{directory / f'peer-{round_number}.sqlite3'}"

    def peer_turn(session_id: str, number: int) -> None:
        history = SQLChatMessageHistory(session_id, connection=peer_url)
        history.messages  # noqa: B018 - reading is the point
        history.add_messages([human(number), ai(number)])

    factory = history_factory("sqlite", path=str(directory / f"ours-{round_number}.sqlite3"))
    # Set up before timing, as the raw contenders' tables are: an app does it once.
    ensure_collection(factory.backend)

    def our_turn(session_id: str, number: int) -> None:
        history = factory(session_id)
        history.messages  # noqa: B018
        history.add_messages([human(number), ai(number)])

    raw = RawSqlite(str(directory / f"raw-{round_number}.sqlite3"))
    bare = RawSqlite(str(directory / f"bare-{round_number}.sqlite3"), same_schema=False)

    def raw_turn(session_id: str, number: int) -> None:
        raw.read(session_id)
        raw.write(session_id, [human(number), ai(number)])

    def bare_turn(session_id: str, number: int) -> None:
        bare.read(session_id)
        bare.write(session_id, [human(number), ai(number)])

    # Alternate who goes first, so neither always runs on a warmer machine.
    order = [("raw", raw_turn), ("bare", bare_turn), ("ours", our_turn), ("peer", peer_turn)]
    if round_number % 2:
        order = order[::-1]
    results = timed_turns(order)
    factory.close()
    return results


def round_of_batches(directory: Path, round_number: int) -> dict[str, float]:
    batch = [m for n in range(5) for m in (human(n), ai(n))]
    history = ChatHistory("batch", backend="sqlite",
                          path=str(directory / f"batch-ours-{round_number}.sqlite3"))
    raw = RawSqlite(str(directory / f"batch-raw-{round_number}.sqlite3"))
    history.add_messages(batch)
    raw.write("batch", batch)  # type: ignore[arg-type]
    repeats = 300
    started = time.perf_counter()
    for _ in range(repeats):
        raw.write("batch", batch)  # type: ignore[arg-type]
    raw_time = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        history.add_messages(batch)
    ours_time = (time.perf_counter() - started) / repeats
    history.close()
    return {"raw": raw_time, "ours": ours_time}


def limit_read_times(directory: Path) -> dict[str, float]:
    get_history = history_factory("sqlite", path=str(directory / "long.sqlite3"))
    records = [message_to_dict(human(n)) for n in range(1000)]
    long_history = get_history("long")
    long_history.get_messages(limit=1)  # creates the table
    for _ in range(100):
        get_history.backend.append("long", records)
    get_history.backend.append("short", records[:100])
    # Noise between the two sessions so neither sits in one contiguous block.
    get_history.backend.append("other", records)
    times = {}
    for name, session_id in (("100", "short"), ("100000", "long")):
        history = get_history(session_id)
        assert len(history.get_messages(limit=20)) == 20
        repeats = 2000
        started = time.perf_counter()
        for _ in range(repeats):
            history.get_messages(limit=20)
        times[name] = (time.perf_counter() - started) / repeats
    get_history.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        turns = [round_of_turns(directory, n) for n in range(rounds)]
        batches = [round_of_batches(directory, n) for n in range(rounds)]
        limits = [limit_read_times(Path(tempfile.mkdtemp(dir=name))) for _ in range(rounds)]

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    peer, ours, raw, bare = (median(turns, k) for k in ("peer", "ours", "raw", "bare"))
    print(f"turn ({SESSIONS} sessions x {TURNS} turns, median of {rounds} rounds)")
    print(f"  langchain_community SQLChatMessageHistory  {peer * 1e3:8.3f} ms")
    print(f"  chathistory sqlite                         {ours * 1e3:8.3f} ms")
    print(f"  raw sqlite3, chathistory's schema          {raw * 1e3:8.3f} ms")
    print(f"  raw sqlite3, a bare table (no sessions)    {bare * 1e3:8.3f} ms")
    print(f"  peer / ours = {peer / ours:6.1f}x   (target >= 20x)")
    print(f"  ours / raw  = {ours / raw:6.2f}x   (target <= 1.2x)")
    print(f"  raw / bare  = {raw / bare:6.2f}x   (what counting sessions costs)")
    batch_ours, batch_raw = median(batches, "ours"), median(batches, "raw")
    print("add_messages of 10")
    print(f"  chathistory {batch_ours * 1e3:.3f} ms, raw executemany {batch_raw * 1e3:.3f} ms")
    print(f"  ours / raw  = {batch_ours / batch_raw:6.2f}x   (target <= 1.2x)")
    short, long = median(limits, "100"), median(limits, "100000")
    print("get_messages(limit=20)")
    print(f"  100-message session {short * 1e3:.3f} ms, 100,000-message session "
          f"{long * 1e3:.3f} ms")
    print(f"  long / short = {long / short:6.2f}x   (target <= 2x)")


if __name__ == "__main__":
    main()
