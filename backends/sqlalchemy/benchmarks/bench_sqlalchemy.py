"""chathistory-sqlalchemy against SQLChatMessageHistory and raw SQLAlchemy Core, in one run.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_sqlalchemy.py [--rounds 7] [--turns 30]

Needs the MariaDB/MySQL server of CHATHISTORY_MYSQL_URL (default
mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4). Works in tables
named chh_bench_<random>_* (the messages, ``_migrations`` and the catalog's
``_sessions``), dropped at the end. Every figure is the median time of one
operation over the rounds; within a round the contenders take turns, one
operation each per step, in an order shuffled anew at every step, so that a
change in the shared machine's load falls on all of them alike. A ratio is the
median over the rounds of the ratio of the medians within each round.

A turn is what a chat server does per request: build the session's history,
read it (20 messages), append the user's and the model's messages.

What each contender sends to the server (seen with SQLAlchemy's echo; PyMySQL
sends no BEGIN, a transaction starts with its first statement):

  chathistory (the backend, chathistory layout, so it keeps the session catalog):
    read:   [pre-ping] SELECT message ... WHERE session_hash = .. AND session_id = ..
            ORDER BY id; ROLLBACK (closing the connection ends its transaction)
    append: [pre-ping] one multi-row INSERT INTO <table> (session_hash,
            session_id, message) VALUES (..), (..); COMMIT. The table's trigger
            (schema version 3) upserts the catalog's entry before each row:
            the count, updated_at, and the entry's row lock, the session's write
            lock. The pre-ping is the default (pool_pre_ping=True); the
            "pool_pre_ping=False" lines are the same backend without it.
  raw SQLAlchemy Core (the floors kept from before the catalog):
    turn:   the same SELECT and ROLLBACK; then one executemany of the rows'
            INSERT (PyMySQL sends it as one multi-row INSERT) and COMMIT, into
            the same table (its trigger counts these rows too).
  raw executemany (10 rows): that INSERT and COMMIT alone.
  raw Core, our statements: plain SQLAlchemy Core on an engine of its own,
            sending exactly our statements (the same SELECT and the same
            multi-row INSERT, written here in Core and checked at start to
            compile to the backend's SQL), in one transaction, with the
            parameters built inline: what our append costs without our code in
            between. Without pre-ping, and with it ("..., pool_pre_ping"), to
            compare with ours each way. (Before the trigger, ours and this floor
            also sent the catalog's upsert before the INSERT.)
  SQLChatMessageHistory: whatever langchain_community sends (a new engine and
            create_all per history built from a URL).

Targets (from the issue):
  1. turn: >= 5x faster than SQLChatMessageHistory built from a URL (as its
     docs show), faster than SQLChatMessageHistory given one shared Engine, and
     at most 1.2x raw SQLAlchemy Core doing the same round trips (the lines
     "raw Core, our statements")
  2. add_messages(10): at most 1.2x raw Core sending our statements (the older
     floor, one raw executemany, printed beside it)
  3. get_messages(limit=20) on a 100,000-message session: at most 2x a 100-message one
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from chathistory_sqlalchemy.sql import Statements
from langchain_community.chat_message_histories import SQLChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, message_to_dict
from sqlalchemy import Engine, create_engine, text

from chathistory import decode_record, encode_record, history_factory, to_messages, to_records

URL = (os.environ.get("CHATHISTORY_MYSQL_URL")
       or "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
PREFIX = f"chh_bench_{secrets.token_hex(3)}"
OURS, PEER = f"{PREFIX}_ours", f"{PREFIX}_peer"
TURN = [HumanMessage("What is the capital of France?"), AIMessage("Paris.")]
TEN = [HumanMessage(f"question {n}") if n % 2 == 0 else AIMessage(f"answer {n}")
       for n in range(10)]


def history_of(size: int) -> list[BaseMessage]:
    return [HumanMessage(f"user message {n}: how do I do thing {n}?") if n % 2 == 0 else
            AIMessage(f"assistant message {n}: like this, step by step, and then {n}.")
            for n in range(size)]


class Bench:
    def __init__(self) -> None:
        self.factory = history_factory("sqlalchemy", url=URL, table=OURS)
        self.factory("warm-up").get_messages(limit=1)  # creates the table, opens the pool
        # The same backend without the pool's pre-ping (one more round trip per checkout),
        # which the raw contender does not do either: what the default's health check costs.
        self.unpinged = history_factory("sqlalchemy", url=URL, table=OURS, pool_pre_ping=False)
        self.unpinged("warm-up").get_messages(limit=1)
        self.statements: Statements = self.factory.backend.statements  # type: ignore[attr-defined]
        self.shared_engine = create_engine(URL)
        SQLChatMessageHistory("warm-up", connection=self.shared_engine, table_name=PEER)
        self.raw = create_engine(URL)  # what an application writing Core by hand would have
        # The same, with the health check the backend's default pool runs (pool_pre_ping).
        self.raw_pinged = create_engine(URL, pool_pre_ping=True)
        self.sessions = 0
        self.our_statements()

    def our_statements(self) -> None:
        """The multi-row INSERTs of 2 and 10 rows, written in plain Core, and checked to
        compile to exactly what the backend sends."""
        catalog = self.statements.catalog
        assert catalog is not None and catalog.trigger is not None, \
            "the chathistory layout on MariaDB keeps a catalog, counted by a trigger"
        self.multi_row = {size: text(
            f"INSERT INTO {OURS} (session_hash, session_id, message) VALUES "
            + ", ".join(f"(:session_hash_{n}, :session_id_{n}, :message_{n})"
                        for n in range(size))) for size in (len(TURN), len(TEN))}
        dialect = self.raw.dialect
        for size, statement in self.multi_row.items():
            ours, _ = self.statements.insert_batch(
                dialect, self.statements.rows("x", ["{}"] * size))
            assert str(statement.compile(dialect=dialect)) == str(
                ours.compile(dialect=dialect)), "the backend's INSERT changed"

    def close(self) -> None:
        self.factory.close()
        self.unpinged.close()
        self.shared_engine.dispose()
        with self.raw.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS `{OURS}`, `{OURS}_migrations`, "
                                    f"`{OURS}_sessions`, `{PEER}`"))
        self.raw.dispose()
        self.raw_pinged.dispose()

    # -- filling --------------------------------------------------------------------------

    def new_session(self, kind: str, size: int) -> str:
        """A new session of ``size`` messages in our table (or the peer's)."""
        self.sessions += 1
        session = f"{kind}-{self.sessions}"
        records = [encode_record(message_to_dict(m)) for m in history_of(size)]
        table = self.statements.table.name if kind != "peer" else PEER
        with self.raw.begin() as connection:
            for start in range(0, size, 1000):
                chunk = records[start:start + 1000]
                if kind == "peer":
                    connection.execute(
                        text(f"INSERT INTO `{table}` (session_id, message) VALUES "
                             + ", ".join([f"(:s, :m{i})" for i in range(len(chunk))])),
                        {"s": session, **{f"m{i}": m for i, m in enumerate(chunk)}})
                else:
                    statement, params = self.statements.insert_batch(
                        self.raw.dialect, self.statements.rows(session, chunk))
                    connection.execute(statement, params)
        return session

    # -- the contenders of a turn ------------------------------------------------------------

    def ours_turn(self, session: str) -> None:
        history = self.factory(session)
        history.get_messages()
        history.add_messages(TURN)

    def unpinged_turn(self, session: str) -> None:
        history = self.unpinged(session)
        history.get_messages()
        history.add_messages(TURN)

    def peer_url_turn(self, session: str) -> Engine:
        history = SQLChatMessageHistory(session, connection=URL, table_name=PEER)
        history.messages  # noqa: B018
        history.add_messages(TURN)
        return history.engine

    def peer_engine_turn(self, session: str) -> None:
        history = SQLChatMessageHistory(session, connection=self.shared_engine,
                                        table_name=PEER)
        history.messages  # noqa: B018
        history.add_messages(TURN)

    def raw_turn(self, session: str, engine: Engine | None = None) -> None:
        s, engine = self.statements, engine or self.raw
        with engine.connect() as connection:
            rows = connection.execute(s.select_all, s.session(session)).scalars().all()
        to_messages([decode_record(row) for row in rows])
        self.raw_add(session, TURN, engine)

    def raw_pinged_turn(self, session: str) -> None:
        self.raw_turn(session, self.raw_pinged)

    def raw_add(self, session: str, messages: Sequence[BaseMessage],
                engine: Engine | None = None) -> None:
        """One executemany of an INSERT, in one transaction (PyMySQL sends one statement)."""
        rows = self.statements.rows(session, [json.dumps(r) for r in to_records(messages)])
        with (engine or self.raw).begin() as connection:
            connection.execute(self.statements.insert, rows)

    def raw_ours_turn(self, session: str, engine: Engine | None = None) -> None:
        """The backend's read and append, in plain Core: no code of ours in between."""
        engine = engine or self.raw
        digest = hashlib.sha256(session.encode("utf-8")).hexdigest()
        with engine.connect() as connection:
            rows = connection.execute(self.statements.select_all, {
                "session_hash": digest, "session_id": session}).all()
        to_messages([decode_record(row[0]) for row in rows])
        self.raw_ours_add(session, TURN, engine)

    def raw_ours_pinged_turn(self, session: str) -> None:
        self.raw_ours_turn(session, self.raw_pinged)

    def raw_ours_add(self, session: str, messages: Sequence[BaseMessage],
                     engine: Engine | None = None) -> None:
        """One multi-row INSERT (the trigger counts it), in a transaction, in plain Core."""
        texts = [encode_record(record) for record in to_records(messages)]
        digest = hashlib.sha256(session.encode("utf-8")).hexdigest()
        params = {}
        for number, message in enumerate(texts):
            params[f"session_hash_{number}"] = digest
            params[f"session_id_{number}"] = session
            params[f"message_{number}"] = message
        with (engine or self.raw).begin() as connection:
            connection.execute(self.multi_row[len(texts)], params)

    def raw_ours_pinged_add(self, session: str, messages: Sequence[BaseMessage]) -> None:
        self.raw_ours_add(session, messages, self.raw_pinged)


def timed(operation: Callable[[], Any]) -> float:
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def run_round(contenders: dict[str, Callable[[], float]], count: int, round_number: int
              ) -> dict[str, float]:
    """Each contender's median over ``count`` operations. The contenders take turns, one
    operation each per step, in an order shuffled anew at every step (the same shuffles
    on every run): a drift of the machine's load or the server's disk lands on all alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    shuffler = random.Random(round_number)
    order = list(contenders)
    gc.collect()
    for _ in range(count):
        shuffler.shuffle(order)
        for name in order:
            times[name].append(contenders[name]())
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, rounds: list[dict[str, float]], base: str,
           targets: dict[str, str], pairs: Sequence[tuple[str, str]] = ()) -> None:
    """A line per contender with its ratio to ``base``; then one per pair (top, bottom)."""
    print(f"\n{title}")
    for name in rounds[0]:
        median = statistics.median(r[name] for r in rounds) * 1e3
        line = f"  {name:<40} {median:8.3f} ms"
        if name != base:
            # The ratio a target is about: slower contender / ours, or ours / the raw floor.
            top, bottom = (base, name) if name.startswith("raw") else (name, base)
            ratio = statistics.median(r[top] / r[bottom] for r in rounds)
            line += f"   {top} / {bottom} = {ratio:5.2f}"
        print(line + (f"   target: {targets[name]}" if name in targets else ""))
    for top, bottom in pairs:  # like with like: both with the pre-ping, or both without
        ratio = statistics.median(r[top] / r[bottom] for r in rounds)
        print(f"  {'':<40} {'':>11}   {top} / {bottom} = {ratio:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--turns", type=int, default=30)
    args = parser.parse_args()
    bench = Bench()
    gc.collect()
    gc.freeze()  # what is loaded now is never garbage: keeps the collector's passes short
    try:
        # 1. Turns, each on a fresh 20-message session.
        def one_turn(kind: str, turn: Callable[[str], Any]) -> Callable[[], float]:
            def run() -> float:
                session = bench.new_session("peer" if kind.startswith("peer") else kind, 20)
                engine: list[Engine] = []
                elapsed = timed(lambda: engine.append(turn(session)))
                if isinstance(engine[0], Engine):
                    engine[0].dispose()  # untimed: keeps the shared server's connections free
                return elapsed
            return run

        turns = {
            "chathistory (history_factory)": one_turn("ours", bench.ours_turn),
            "SQLChatMessageHistory(URL)": one_turn("peer", bench.peer_url_turn),
            "SQLChatMessageHistory(engine)": one_turn("peer", bench.peer_engine_turn),
            "raw SQLAlchemy Core": one_turn("raw", bench.raw_turn),
            "raw SQLAlchemy Core, pool_pre_ping": one_turn("raw", bench.raw_pinged_turn),
            "chathistory, pool_pre_ping=False": one_turn("ours", bench.unpinged_turn),
            "raw Core, our statements": one_turn("raw", bench.raw_ours_turn),
            "raw Core, our statements, pool_pre_ping": one_turn(
                "raw", bench.raw_ours_pinged_turn),
        }
        turn_rounds = [run_round(turns, args.turns, n) for n in range(args.rounds)]
        report("turn (new history, read 20, add 2)", turn_rounds,
               "chathistory (history_factory)",
               {"SQLChatMessageHistory(URL)": ">= 5", "SQLChatMessageHistory(engine)": "> 1",
                "raw SQLAlchemy Core": "<= 1.2", "raw Core, our statements": "<= 1.2"},
               [("chathistory, pool_pre_ping=False", "raw Core, our statements")])

        # 2. add_messages(10) against one raw executemany.
        session_ours, session_raw = bench.new_session("ours", 0), bench.new_session("raw", 0)
        session_raw_ours = bench.new_session("raw", 0)
        session_raw_pinged = bench.new_session("raw", 0)
        history = bench.factory(session_ours)
        unpinged = bench.unpinged(bench.new_session("ours", 0))
        adds = {
            "chathistory add_messages(10)": lambda: timed(lambda: history.add_messages(TEN)),
            "chathistory, pool_pre_ping=False": lambda: timed(
                lambda: unpinged.add_messages(TEN)),
            "raw executemany (10 rows)": lambda: timed(lambda: bench.raw_add(session_raw, TEN)),
            "raw Core, our statements": lambda: timed(
                lambda: bench.raw_ours_add(session_raw_ours, TEN)),
            "raw Core, our statements, pool_pre_ping": lambda: timed(
                lambda: bench.raw_ours_pinged_add(session_raw_pinged, TEN)),
        }
        add_rounds = [run_round(adds, args.turns, n) for n in range(args.rounds)]
        report("add_messages(10)", add_rounds, "chathistory add_messages(10)",
               {"raw executemany (10 rows)": "<= 1.2", "raw Core, our statements": "<= 1.2"},
               [("chathistory, pool_pre_ping=False", "raw Core, our statements")])

        # 3. The newest 20 of a 100,000-message session and of a 100-message one.
        big, small = bench.new_session("ours", 100_000), bench.new_session("ours", 100)
        with bench.raw.connect() as connection:
            connection.execute(text(f"ANALYZE TABLE `{OURS}`")).all()
        big_history, small_history = bench.factory(big), bench.factory(small)
        reads = {
            "limit=20 of 100 messages": lambda: timed(
                lambda: small_history.get_messages(limit=20)),
            "limit=20 of 100,000 messages": lambda: timed(
                lambda: big_history.get_messages(limit=20)),
        }
        read_rounds = [run_round(reads, args.turns * 2, n) for n in range(args.rounds)]
        report("get_messages(limit=20)", read_rounds, "limit=20 of 100 messages",
               {"limit=20 of 100,000 messages": "<= 2"})
    finally:
        bench.close()


if __name__ == "__main__":
    main()
