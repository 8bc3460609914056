"""The time of a page of list_sessions, as the sessions grow from 10 to 100 messages.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_list_sessions.py [--rounds 5]

For each database (MariaDB/MySQL of CHATHISTORY_MYSQL_URL, default
mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4, and a SQLite file in
a temporary directory) and each layout, two stores of 2,000 sessions, one of 10
messages per session and one of 100, each read as 20 pages of 100 sessions
(``list_sessions(after=..., limit=100)``), in ``--rounds`` passes taken on
the two stores in turn (so what the machine does meanwhile falls on both). A
figure is the median time of one page; the ratio is 100 messages over 10 (target: at most
1.5). On MariaDB, first as loaded (the server still plans with the statistics
of the table it opened empty), then after ``ANALYZE TABLE``. Last, the same
on a table without the listing index (what a table that create_collection has
not upgraded costs, e.g. a peer's, read in place).

MariaDB tables are named chh_bench_<random>_*, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import create_engine, inspect, text

from chathistory.testing import numbered_records

MYSQL_URL = (os.environ.get("CHATHISTORY_MYSQL_URL")
             or "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
PREFIX = f"chh_bench_{secrets.token_hex(3)}"
SESSIONS, PAGE = 2000, 100


def fill(backend: SQLAlchemyBackend, per_session: int) -> None:
    records = numbered_records(per_session)
    ids = [f"user-{number:05d}" for number in range(SESSIONS)]
    for start in range(0, SESSIONS, 100):
        backend.append_many({session: records for session in ids[start:start + 100]})


def page_times(backend: SQLAlchemyBackend, rounds: int) -> list[float]:
    times: list[float] = []
    for _ in range(rounds):
        after: str | None = None
        while True:
            started = time.perf_counter()
            page = backend.list_sessions(after=after, limit=PAGE)
            times.append(time.perf_counter() - started)
            if not page:
                break
            after = page[-1].session_id
    return times


def analyze(url: str, backend: SQLAlchemyBackend) -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.execute(text(f"ANALYZE TABLE `{backend.statements.table.name}`")).all()
    engine.dispose()


def drop_listing_index(url: str, backend: SQLAlchemyBackend) -> None:
    """Make the table as one create_collection has not upgraded: no listing index."""
    listing, table = backend.statements.listing, backend.statements.table.name
    engine = create_engine(url)
    with engine.begin() as connection:
        if listing.kind == "mysql":
            connection.execute(text(f"ALTER TABLE `{table}` DROP INDEX `{listing.index_name}`, "
                                    "DROP COLUMN session_key"))
        else:
            connection.execute(text(f'DROP INDEX "{listing.index_name}"'))
    engine.dispose()


def alternately(backends: dict[int, SQLAlchemyBackend], rounds: int) -> dict[int, float]:
    """The median page time of each store, passes taken in turn so noise falls on both."""
    times: dict[int, list[float]] = {per_session: [] for per_session in backends}
    for _ in range(rounds):
        for per_session, backend in backends.items():
            times[per_session] += page_times(backend, 1)
    return {per_session: statistics.median(found) for per_session, found in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as directory:
        databases = {"MariaDB": MYSQL_URL,
                     "SQLite": f"sqlite:///{Path(directory) / 'bench.sqlite3'}"}
        made: set[str] = set()
        try:
            for name, url in databases.items():
                for layout in ("chathistory", "langchain_community"):
                    backends: dict[int, SQLAlchemyBackend] = {}
                    for per_session in (10, 100):
                        table = f"{PREFIX}_{layout[0]}{per_session}"
                        made |= {table, f"{table}_migrations", f"{table}_sessions"}
                        backend = SQLAlchemyBackend.from_options(url=url, table=table,
                                                                 layout=layout)
                        backend.create_collection()
                        fill(backend, per_session)
                        backend.list_sessions(limit=PAGE)  # warm the pool and the cache
                        backends[per_session] = backend
                    figures = {"as loaded": alternately(backends, rounds)}
                    if name == "MariaDB":
                        for backend in backends.values():
                            analyze(url, backend)
                        figures["after ANALYZE"] = alternately(backends, rounds)
                    for backend in backends.values():
                        drop_listing_index(url, backend)
                    figures["no listing index"] = alternately(backends, max(1, rounds // 2))
                    for backend in backends.values():
                        backend.close()
                    for how, found in figures.items():
                        few, many = found[10], found[100]
                        print(f"{name:8} {layout:20} {how:17} 10 msg/session "
                              f"{few * 1000:7.2f} ms  100 msg/session {many * 1000:7.2f} ms  "
                              f"ratio {many / few:5.2f}", flush=True)
        finally:
            engine = create_engine(MYSQL_URL)
            existing = set(inspect(engine).get_table_names())
            with engine.begin() as connection:
                for table in made & existing:
                    connection.execute(text(f"DROP TABLE `{table}`"))
            engine.dispose()


if __name__ == "__main__":
    main()
