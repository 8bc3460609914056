"""A page of list_sessions on PostgreSQL, against its raw floor.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_pg_list_sessions.py [--rounds 7]

For each layout, a table of 200,000 messages over 20,000 sessions (10 each,
written by the backend's append_many), on the PostgreSQL of
CHATHISTORY_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
Two contenders read the same pages of 100 sessions (the first, and those after
user-005000, user-010000 and user-019900), in turn, each first in turn
(``--rounds`` times each), so what the machine does meanwhile falls on both:

- ours: ``backend.list_sessions(after=..., limit=100)``;
- raw: on a plain psycopg connection in autocommit, the loose index scan over
  ``session_id COLLATE "C"`` (and in the ``chathistory`` layout the page's
  catalog rows, by ``session_hash = ANY(...)``, as ours reads their counts).

Both tables (and the catalog) are vacuumed and analyzed first. A figure is the
median time of one page, in ms. Tables are named
chh_bench_<random>_*, dropped at the end. Run with an older source tree on
PYTHONPATH to time that tree's ``ours`` against the same floor (the floor's
index is made here if that tree made none).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import make_url

from chathistory.testing import numbered_records

URL = (os.environ.get("CHATHISTORY_POSTGRES_URL")
       or "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PREFIX = f"chh_bench_{secrets.token_hex(3)}"
SESSIONS, PER_SESSION, PAGE = 20_000, 10, 100
AFTER = [None, "user-005000", "user-010000", "user-019900"]


def fill(backend: SQLAlchemyBackend) -> None:
    records = numbered_records(PER_SESSION)
    ids = [f"user-{number:05d}" for number in range(SESSIONS)]
    for start in range(0, SESSIONS, 500):
        backend.append_many({session: records for session in ids[start:start + 500]})


def loose_scan(table: str) -> str:
    ordered = 'session_id COLLATE "C"'
    probe = f'SELECT min({ordered}) FROM "{table}"'
    return (f"WITH RECURSIVE page(session_id, number) AS ("
            f"SELECT ({probe} WHERE {ordered} >= %(start)s), 1 "
            f"UNION ALL SELECT ({probe} WHERE {ordered} > page.session_id), number + 1 "
            "FROM page WHERE page.session_id IS NOT NULL AND number < %(n)s) "
            "SELECT session_id FROM page WHERE session_id IS NOT NULL")


def contenders(backend: SQLAlchemyBackend, connection: psycopg.Connection[Any],
               table: str) -> dict[str, Callable[[str | None], list[str]]]:
    page = loose_scan(table)
    entries = (f'SELECT session_id, messages, updated_at FROM "{table}_sessions" '
               "WHERE session_hash = ANY(%(hashes)s)")

    def ours(after: str | None) -> list[str]:
        return [info.session_id for info in backend.list_sessions(after=after, limit=PAGE)]

    def raw(after: str | None) -> list[str]:
        rows = connection.execute(page, {"start": after or "", "n": PAGE + 1}).fetchall()
        ids = [row[0] for row in rows if after is None or row[0] > after][:PAGE]
        if backend.config.layout == "chathistory":  # the counts, as ours reads them
            hashes = [hashlib.sha256(session.encode()).hexdigest() for session in ids]
            connection.execute(entries, {"hashes": hashes}).fetchall()
        return ids

    return {"ours": ours, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    dsn = make_url(URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        try:
            for layout in ("chathistory", "langchain_community"):
                table = f"{PREFIX}_{layout[0]}"
                backend = SQLAlchemyBackend.from_options(url=URL, table=table, layout=layout)
                backend.create_collection()
                fill(backend)
                connection.execute(f'CREATE INDEX IF NOT EXISTS "{table}_session_c_idx" '
                                   f'ON "{table}" (session_id COLLATE "C")')
                connection.execute(f'VACUUM ANALYZE "{table}"')
                if layout == "chathistory":  # its catalog too (not yet analyzed: a Seq Scan)
                    connection.execute(f'VACUUM ANALYZE "{table}_sessions"')
                runs = contenders(backend, connection, table)
                for after in AFTER:  # warm, and every contender gives the same page
                    pages = [run(after) for run in runs.values()]
                    assert all(found == pages[0] for found in pages), after
                times: dict[str, list[float]] = {name: [] for name in runs}
                names = list(runs)
                for number in range(rounds * len(names)):
                    turn = number % len(names)  # each contender first in turn
                    for after in AFTER:
                        for name in names[turn:] + names[:turn]:
                            started = time.perf_counter()
                            runs[name](after)
                            times[name].append(time.perf_counter() - started)
                backend.close()
                medians = {name: statistics.median(found) * 1000
                           for name, found in times.items()}
                print(f"{layout:20} page of {PAGE}, {SESSIONS * PER_SESSION:,} messages: "
                      + "  ".join(f"{name} {median:8.3f} ms" for name, median in medians.items())
                      + f"  ours/raw {medians['ours'] / medians['raw']:.2f}", flush=True)
        finally:
            for layout in ("chathistory", "langchain_community"):
                table = f"{PREFIX}_{layout[0]}"
                connection.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_migrations", '
                                   f'"{table}_sessions"')


if __name__ == "__main__":
    main()
