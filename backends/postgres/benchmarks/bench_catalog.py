"""The session catalog on PostgreSQL: a sidebar page and an owner's erasure at two sizes,
and what keeping the catalog adds to a turn. One run, every contender side by side.

    .venv/bin/python backends/postgres/benchmarks/bench_catalog.py \\
        [--sizes 10000 100000] [--rounds 5] [--turn-rounds 15] [--turns-only]
        [--synchronous-commit off] [--adk-python /tmp/adk-pg/bin/python [--adk-only]]

Needs the server of CHATHISTORY_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test); works in a schema of its own, dropped
at the end. For each size, a table is filled with that many sessions of two
messages each, 100 per owner, with distinct update times (``append_many`` then
``restore_summaries``, 10,000 sessions at a time), and analyzed. Then, both sizes
filled, each round measures each size in turn (the order alternating):

- **page**: ``list_conversations(backend, owner=X, limit=20)``, one owner's 20
  newest: the median of 20 calls, for ``--rounds`` owners picked at random; the
  figure is the median over the owners;
- **erase**: ``erase(backend, owner=X)`` of one owner's 100 sessions (200
  messages), the median over ``--rounds`` owners.

Ratio: the median over the rounds of large / small within the round (target: at
most 1.3).

**turn** (read the newest 20 messages, append two) on 50 sessions of 20 messages,
four turns each per round (``--turn-rounds``), the contenders interleaved round by
round (the order alternating), each on a table of its own:

- ``kept``: this release (schema version 3, the catalog kept by the triggers);
- ``previous``: the previous release's table (version 2: the triggers counted
  writes and times; no catalog columns, no listing indexes);
- ``plain``: the same table as ``kept`` with the counting triggers dropped (no
  sessions table kept at all).

Ratios: kept / previous (what the catalog adds, target: at most 1.1) and
kept / plain (all the bookkeeping).

``--adk-python PATH`` names an interpreter with ``google-adk[db]`` and
``psycopg[binary]`` (see ``adk_list_sessions.py``): Google ADK's
``DatabaseSessionService.list_sessions`` for one user (100 sessions) on this
server, in a schema of its own, at each of ``--adk-sizes``, next to
chathistory's page of 20 and its listing of the user's 100 at the same sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from chathistory_postgres import PostgresBackend
from chathistory_postgres import sql as backend_sql
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict
from psycopg import sql

from chathistory import erase, list_conversations
from chathistory.catalog import SessionSummary

URL = os.environ.get("CHATHISTORY_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = f"chathistory_bench_catalog_{secrets.token_hex(3)}"
PER_OWNER = 100
FILL_CHUNK = 10_000
WINDOW = 20


def records(session: int) -> list[dict[str, Any]]:
    return [message_to_dict(HumanMessage(f"question of session {session}")),
            message_to_dict(AIMessage(f"a reasonably sized answer for session {session}"))]


def owner_of(session: int) -> str:
    return f"user-{session // PER_OWNER:06d}"


@contextmanager
def benchmark_schema() -> Iterator[psycopg.Connection[Any]]:
    admin = psycopg.connect(URL, autocommit=True)
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    try:
        yield admin
    finally:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
        admin.close()


def backend_on(table: str, synchronous_commit: str | None, create: bool = True
               ) -> PostgresBackend:
    conninfo = URL
    if synchronous_commit:  # this benchmark's connections only, never the server's setting
        conninfo += ("&" if "?" in URL else "?") + \
            f"options=-c%20synchronous_commit%3D{synchronous_commit}"
    backend = PostgresBackend.from_options(conninfo=conninfo, schema=SCHEMA, table=table)
    if create:
        backend.create_collection()
    return backend


def fill(backend: PostgresBackend, admin: psycopg.Connection[Any], sessions: int) -> float:
    """``sessions`` sessions of two messages, 100 per owner, distinct times; seconds taken."""
    started = time.perf_counter()
    base = datetime.now(UTC) - timedelta(days=400)
    for start in range(0, sessions, FILL_CHUNK):
        numbers = range(start, min(start + FILL_CHUNK, sessions))
        backend.append_many({f"s{number:08d}": records(number) for number in numbers})
        backend.restore_summaries([SessionSummary(
            f"s{number:08d}", owner_of(number), f"Conversation {number}", {},
            base + timedelta(seconds=number), base + timedelta(seconds=number, minutes=5), 0)
            for number in numbers])
    for table in (backend.statements.qualified_table, backend.statements.qualified_sessions):
        admin.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.SQL(table)))
    return time.perf_counter() - started


def median_of(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def filled(sessions: int, admin: psycopg.Connection[Any], synchronous_commit: str | None,
           table: str | None = None) -> tuple[PostgresBackend, float]:
    backend = backend_on(table or f"size_{sessions}", synchronous_commit)
    seconds = fill(backend, admin, sessions)
    page = list_conversations(backend, owner=owner_of(0), limit=20)
    assert len(page.summaries) == 20 and page.summaries[0].session_id == f"s{99:08d}"
    return backend, seconds


def page_time(backend: PostgresBackend, owner: str) -> float:
    """One owner's page of 20 newest: the median of 20 calls."""
    return median_of(partial(list_conversations, backend, owner=owner, limit=20), 20)


def erase_time(backend: PostgresBackend, owner: str) -> float:
    started = time.perf_counter()
    receipt = erase(backend, owner=owner)
    seconds = time.perf_counter() - started
    assert (receipt.sessions, receipt.messages) == (PER_OWNER, 2 * PER_OWNER), receipt
    return seconds


def previous_release(admin: psycopg.Connection[Any], table: str,
                     synchronous_commit: str | None) -> PostgresBackend:
    """A table as the release before the catalog made it: the steps up to version 2."""
    statements = backend_sql.Statements(SCHEMA, table, "chathistory")
    with admin.transaction():
        for steps in statements.migrations[:3]:
            for step in steps:
                admin.execute(step.encode())
        admin.execute(statements.write_meta.encode(), ("2", "chathistory"))
    return backend_on(table, synchronous_commit, create=False)  # no create: no upgrade


def without_bookkeeping(admin: psycopg.Connection[Any], table: str,
                        synchronous_commit: str | None) -> PostgresBackend:
    backend = backend_on(table, synchronous_commit)
    for event in ("insert", "delete", "update", "truncate"):
        admin.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
            sql.Identifier(f"{table}_count_{event}"),
            sql.SQL(backend.statements.qualified_table)))
    return backend


def measure_turns(rounds: int, admin: psycopg.Connection[Any],
                  synchronous_commit: str | None) -> dict[str, float]:
    contenders = {"kept": backend_on("turn_kept", synchronous_commit),
                  "previous": previous_release(admin, "turn_previous", synchronous_commit),
                  "plain": without_bookkeeping(admin, "turn_plain", synchronous_commit)}
    version = admin.execute(sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(
        sql.SQL(contenders["previous"].statements.qualified_meta))).fetchone()
    assert version == ("2",), version
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for backend in contenders.values():
        for session in range(50):
            backend.append(f"t{session}", records(session) * 10)
    names = list(contenders)
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            backend = contenders[name]
            started = time.perf_counter()
            for turn in range(4):
                for session in range(50):
                    backend.fetch(f"t{session}", limit=WINDOW)
                    backend.append(f"t{session}", records(turn))
            per_round[name].append((time.perf_counter() - started) / 200)
    version = admin.execute(sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(
        sql.SQL(contenders["previous"].statements.qualified_meta))).fetchone()
    assert version == ("2",), version  # still the previous layout: nothing upgraded it
    for backend in contenders.values():
        backend.close()
    ratios = {f"{name}/{other}": statistics.median(
        [mine / theirs for mine, theirs in zip(per_round[name], per_round[other], strict=True)])
        for name, other in (("kept", "previous"), ("kept", "plain"))}
    return {**{name: statistics.median(times) for name, times in per_round.items()}, **ratios}


def adk_comparison(args: argparse.Namespace, admin: psycopg.Connection[Any]) -> None:
    script = Path(__file__).with_name("adk_list_sessions.py")
    print(f"Google ADK (run by {args.adk_python}): DatabaseSessionService.list_sessions (one user, "
          "100 sessions) against chathistory's list_conversations, same server:")
    for size in args.adk_sizes:
        backend, _ = filled(size, admin, args.synchronous_commit, f"adk_{size}")
        owners = [owner_of(number * PER_OWNER) for number in random.Random(size).sample(
            range(size // PER_OWNER), args.rounds)]
        page = statistics.median([page_time(backend, owner) for owner in owners])
        whole = statistics.median([median_of(partial(
            list_conversations, backend, owner=owner, limit=PER_OWNER), 20) for owner in owners])
        backend.close()
        schema = f"{SCHEMA}_adk_{size}"
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            child = subprocess.run([args.adk_python, str(script), URL, schema, str(size),
                                    str(args.rounds)], capture_output=True, text=True,
                                   check=True, timeout=900)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        adk = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{size:>9,} sessions: ADK {adk['list'] * 1e3:.2f} ms; chathistory page of 20 "
              f"{page * 1e3:.3f} ms ({adk['list'] / page:.0f}x faster), all 100 "
              f"{whole * 1e3:.3f} ms ({adk['list'] / whole:.0f}x faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turn-rounds", type=int, default=15)
    parser.add_argument("--turns-only", action="store_true", help="skip the two sizes")
    parser.add_argument("--adk-python", default=None,
                        help="an interpreter with google-adk[db] and psycopg[binary]")
    parser.add_argument("--adk-sizes", type=int, nargs=2, default=[5_000, 50_000])
    parser.add_argument("--adk-only", action="store_true", help="only the ADK comparison")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default=None,
                        help="for this benchmark's connections (default: the server's)")
    args = parser.parse_args()
    with benchmark_schema() as admin:
        server = admin.execute("SELECT version()").fetchone()
        commit = admin.execute("SHOW synchronous_commit").fetchone()
        print(f"server: {server[0] if server else '?'}")
        print(f"synchronous_commit: {args.synchronous_commit or (commit[0] if commit else '?')}"
              f"; sizes {args.sizes}; rounds {args.rounds}; turn rounds {args.turn_rounds}")
        if args.adk_python:
            adk_comparison(args, admin)
        if args.adk_only:
            return
        if not args.turns_only:
            sizes(args, admin)
        turns = measure_turns(args.turn_rounds, admin, args.synchronous_commit)
        print("turn (read 20, append 2): " + ", ".join(
            f"{name} {turns[name] * 1e3:.3f} ms" for name in ("kept", "previous", "plain")))
        print(f"turn ratio kept/previous: {turns['kept/previous']:.2f}x (target <= 1.1); "
              f"kept/plain: {turns['kept/plain']:.2f}x")


def sizes(args: argparse.Namespace, admin: psycopg.Connection[Any]) -> None:
    stores = [filled(size, admin, args.synchronous_commit) for size in args.sizes]
    pages: list[list[float]] = [[], []]
    erasures: list[list[float]] = [[], []]
    # Distinct owners per size: one to list and one to erase in each round.
    chosen = [[owner_of(number * PER_OWNER) for number in random.Random(size).sample(
        range(size // PER_OWNER), 2 * args.rounds)] for size in args.sizes]
    for number in range(args.rounds):
        for which in (0, 1) if number % 2 == 0 else (1, 0):
            backend, owners = stores[which][0], chosen[which]
            pages[which].append(page_time(backend, owners[2 * number]))
            erasures[which].append(erase_time(backend, owners[2 * number + 1]))
    for (backend, seconds), size, page, erased in zip(stores, args.sizes, pages, erasures,
                                                      strict=True):
        print(f"{size:>9,} sessions: filled in {seconds:.1f} s; page "
              f"{statistics.median(page) * 1e3:.3f} ms; erase of 100 sessions "
              f"{statistics.median(erased) * 1e3:.2f} ms")
        backend.close()
    for name, figures in (("page ", pages), ("erase", erasures)):
        ratio = statistics.median([large / small for small, large in zip(*figures,
                                                                         strict=True)])
        print(f"{name} ratio {args.sizes[1]:,}/{args.sizes[0]:,}: {ratio:.2f}x "
              "(target <= 1.3)")


if __name__ == "__main__":
    main()
