"""What each statement of one owner's erasure costs MariaDB at two sizes (issue 19's target).

    .venv/bin/python backends/sqlalchemy/benchmarks/erase_statements.py \
        [--sizes 10000 1000000] [--rounds 6] [--erasures 5]

On a private MariaDB server (bench_catalog's settings, a 2 GB buffer pool, which
holds both sizes' tables), one table of each size filled as bench_catalog fills
it (100 sessions an owner, two messages a session). What one
``erase(backend, owner=...)`` sends is captured at each size and replayed on one
PyMySQL connection for other owners (bench_catalog's ``captured_erase`` and
``replayed_erase``: the floor its "raw erase, our statements" line measures), the
sizes taken in turn, ``--erasures`` owners a size a round. Around each statement
and each transaction's end: the wall time, the CPU time of the server's thread
that serves the connection (Linux's schedstat), and the whole server's
buffer-pool reads (the server serves nothing else; its purge may run meanwhile).
The report gives their medians by step and size, and those of whole erasures.

Then, for one more owner at each size, each statement's plan (``EXPLAIN
FORMAT=JSON``: access, key, estimated rows) and what it did (the connection's
``Handler_*`` counters: index lookups, rows read next, rows deleted), and each
index's leaf pages (``mysql.innodb_index_stats``, after the fill's ``ANALYZE
TABLE``): the plans and rows are the same at both sizes; what grows is the depth
of each lookup by hash.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import bench_catalog as bench
from bench_trigger_cost import thread_nanoseconds
from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import create_engine, text

Cost = tuple[float, int, int]  # wall seconds, server thread nanoseconds, buffer-pool reads


def step_name(statement: str) -> str:
    """What a statement of the erasure does, from its text."""
    words = statement.split()
    if words[0].upper() == "SELECT":
        return "listing" if "owner_hash" in statement else "count"
    if words[0].upper() == "DELETE":
        return "DELETE entries" if words[2].endswith("_sessions") else "DELETE messages"
    return words[0]


class Observed:
    """One PyMySQL connection, as ``replayed_erase`` uses one, that measures each step."""

    def __init__(self, connection: Any, status: Any, pid: int) -> None:
        self.connection, self.status, self.pid = connection, status, pid
        cursor = connection.cursor()
        cursor.execute("SELECT tid FROM information_schema.processlist "
                       "WHERE id = CONNECTION_ID()")
        (self.thread,) = cursor.fetchone()
        connection.commit()
        self.steps: list[tuple[str, Cost]] = []  # this erasure's, in order
        self.plans: list[str] | None = None  # collected where not None

    def pool_reads(self) -> int:
        cursor = self.status.cursor()
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_read_requests'")
        return int(cursor.fetchone()[1])

    def measured(self, name: str, call: Callable[[], Any]) -> None:
        reads, cpu = self.pool_reads(), thread_nanoseconds(self.pid, self.thread)
        started = time.perf_counter()
        call()
        wall = time.perf_counter() - started
        cost = (wall, thread_nanoseconds(self.pid, self.thread) - cpu,
                self.pool_reads() - reads)
        self.steps.append((name, cost))

    def cursor(self) -> ObservedCursor:
        return ObservedCursor(self)

    def commit(self) -> None:
        self.measured("commit", self.connection.commit)

    def rollback(self) -> None:
        self.measured("rollback", self.connection.rollback)


class ObservedCursor:
    """A cursor of :class:`Observed`: ``execute`` measured (and explained, if asked)."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed
        self.cursor = observed.connection.cursor()

    def execute(self, statement: str, values: Any) -> None:
        name = step_name(statement)
        plans = self.observed.plans
        if plans is None:
            self.observed.measured(name, lambda: self.cursor.execute(statement, values))
            return
        side = self.observed.connection.cursor()  # the statement's rows stay buffered
        side.execute(f"EXPLAIN FORMAT=JSON {statement}", values)
        plan = json.loads(side.fetchone()[0])
        before = handler_counts(side)
        self.cursor.execute(statement, values)
        done = {key: value - before.get(key, 0) for key, value in handler_counts(side).items()
                if value != before.get(key, 0)}
        plans.append(f"  {name}: {'; '.join(accesses(plan))}; did {done}")

    def fetchall(self) -> Any:
        return self.cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)


def handler_counts(cursor: Any) -> dict[str, int]:
    cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_key', "
                   "'Handler_read_next', 'Handler_read_rnd', 'Handler_delete')")
    return {name.removeprefix("Handler_"): int(value) for name, value in cursor.fetchall()}


def accesses(plan: Any) -> list[str]:
    """Each table access of an EXPLAIN FORMAT=JSON: table, access type, key, rows."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "table_name" in node:
                found.append(f"{node['table_name']} {node.get('access_type')} on "
                             f"{node.get('key')}, {node.get('rows')} rows estimated")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


def leaf_pages(admin: Any, table: str) -> str:
    with admin.connect() as connection:
        rows = connection.execute(text(
            "SELECT index_name, stat_value FROM mysql.innodb_index_stats "
            "WHERE database_name = DATABASE() AND table_name = :table "
            "AND stat_name = 'n_leaf_pages' ORDER BY index_name"), {"table": table}).all()
    return ", ".join(f"{name} {int(value):,}" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--erasures", type=int, default=5, help="owners a size a round")
    arguments = parser.parse_args()
    if arguments.rounds * arguments.erasures + 2 > min(arguments.sizes) // bench.PER_OWNER:
        parser.error("--rounds x --erasures erasures need more owners than the smaller "
                     "size has")
    with bench.private_server("2G") as server:
        assert server.process is not None
        admin = create_engine(server.url)
        backends: dict[int, SQLAlchemyBackend] = {}
        connections: list[Any] = []
        try:
            for size in arguments.sizes:
                table = f"{bench.PREFIX}_{size}"
                backends[size] = backend = SQLAlchemyBackend.from_options(url=server.url,
                                                                          table=table)
                backend.create_collection()
                seconds = bench.fill(admin, table, size)
                print(f"filled {size:,} sessions in {seconds:.1f} s; leaf pages: "
                      f"{leaf_pages(admin, table)}; {leaf_pages(admin, f'{table}_sessions')}",
                      flush=True)
            captured = {size: bench.captured_erase(backend, "o-0")
                        for size, backend in backends.items()}
            print(bench.describe_server(admin, private=True), flush=True)
            print(bench.wait_for_purge(admin), flush=True)
            connections += [server.connect(), server.connect()]
            connections[0].autocommit(False)
            observed = Observed(connections[0], connections[1], server.process.pid)
            costs: dict[int, list[list[tuple[str, Cost]]]] = {size: [] for size in backends}
            owners = {size: iter(range(1, size // bench.PER_OWNER)) for size in backends}
            for round_number in range(arguments.rounds):
                order = list(backends) if round_number % 2 == 0 else list(backends)[::-1]
                for size in order:
                    for _ in range(arguments.erasures):
                        observed.steps = []
                        deleted = bench.replayed_erase(observed, captured[size],
                                                       f"o-{next(owners[size])}")
                        assert deleted == 3 * bench.PER_OWNER, deleted
                        costs[size].append(observed.steps)
            low, high = arguments.sizes
            print(f"\nmedians of {arguments.rounds * arguments.erasures} erasures a size: "
                  f"{low:,} -> {high:,} sessions")
            names = [name for name, _ in costs[low][0]]
            for index, name in enumerate(["the whole erasure", *names]):
                by_size = {size: [sum_of(erasure) if index == 0 else erasure[index - 1][1]
                                  for erasure in erasures]
                           for size, erasures in costs.items()}
                low_cost, high_cost = (medians(by_size[size]) for size in (low, high))
                print(f"  {index}. {name:17} wall {low_cost[0] * 1e3:6.2f} -> "
                      f"{high_cost[0] * 1e3:6.2f} ms   server thread {low_cost[1] / 1e3:6.0f} "
                      f"-> {high_cost[1] / 1e3:6.0f} us   buffer-pool reads "
                      f"{low_cost[2]:5.0f} -> {high_cost[2]:5.0f}")
            for size in backends:
                observed.plans = []
                bench.replayed_erase(observed, captured[size], f"o-{next(owners[size])}")
                print(f"\nplans at {size:,} sessions, and what each statement did:")
                print("\n".join(observed.plans))
        finally:
            for connection in connections:
                connection.close()
            for backend in backends.values():
                backend.close()
            admin.dispose()
    return 0


def sum_of(erasure: list[tuple[str, Cost]]) -> Cost:
    return (sum(cost[0] for _, cost in erasure), sum(cost[1] for _, cost in erasure),
            sum(cost[2] for _, cost in erasure))


def medians(costs: list[Cost]) -> tuple[float, float, float]:
    return (statistics.median(cost[0] for cost in costs),
            statistics.median(cost[1] for cost in costs),
            statistics.median(cost[2] for cost in costs))


if __name__ == "__main__":
    sys.exit(main())
