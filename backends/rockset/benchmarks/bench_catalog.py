"""The catalog's read side on Rockset (issue 19): a page of the 20 newest sessions, by size.

Against the in-process emulator only (Rockset's service is gone), in one run, the
sizes side by side in each round. Run from the repository root::

    .venv/bin/python backends/rockset/benchmarks/bench_catalog.py [--sizes 1000 10000]

Per size it prints the median over the rounds of: the first page of 20 newest
sessions (``list_summaries``), a page after a cursor, the same two queries sent
raw through the SDK (``client.sql``, the floor: what any client pays), and a page
of ``list_sessions`` (id order) for reference; then the ratio of the largest size
to the smallest. It also counts the requests of a turn (read a window, append two)
to show the catalog adds none: Rockset's catalog is read from what the documents
already hold.

Filling is cheap: sessions are added 1,000 documents per Write API request.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chathistory_rockset.backend import RocksetBackend
from rockset_emulator import RocksetEmulator

from chathistory.testing import numbered_records

API_KEY = "bench-key"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
BATCH = 1000
PAGE = 20
# The backend's query, as docs/backends/rockset.md shows it.
RAW = ('SELECT _id AS "session", ARRAY_LENGTH("messages") AS "count", "last_write" AS '
       '"written", _event_time AS "created" FROM "commons"."{collection}" '
       "WHERE ARRAY_LENGTH(\"messages\") > 0 {keyset}"
       "ORDER BY COALESCE(\"last_write\", '') DESC, _id DESC LIMIT " + str(PAGE + 1))
KEYSET = ("AND (COALESCE(\"last_write\", '') < :key OR (COALESCE(\"last_write\", '') = :key "
          "AND _id < :after)) ")


def fill(emu: RocksetEmulator, backend: RocksetBackend, sessions: int) -> None:
    client = emu.client()
    base = datetime(2024, 1, 1, tzinfo=UTC)
    records = numbered_records(4)
    for start in range(0, sessions, BATCH):
        client.Documents.add_documents(
            collection=backend.config.collection, workspace=backend.config.workspace,
            data=[{"_id": f"s{number:07}", "messages": records,
                   "_event_time": (base + timedelta(seconds=number)).strftime(TIME_FORMAT),
                   "last_write": (base + timedelta(seconds=number * 7 % sessions, hours=1))
                   .strftime(TIME_FORMAT)}
                  for number in range(start, min(start + BATCH, sessions))])


def seconds_of(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--rounds", type=int, default=15)
    arguments = parser.parse_args()
    sizes: list[int] = sorted(arguments.sizes)

    with RocksetEmulator(api_key=API_KEY) as emu:
        backends: dict[int, RocksetBackend] = {}
        for size in sizes:
            backend = RocksetBackend.from_options(api_key=API_KEY, host=emu.url,
                                                  collection=f"catalog_{size}")
            backend.create_collection()
            filled = seconds_of(lambda b=backend, n=size: fill(emu, b, n))  # type: ignore[misc]
            print(f"filled {size:>7} sessions in {filled:.1f} s")
            backends[size] = backend
        client = emu.client()

        def contenders(backend: RocksetBackend) -> dict[str, Callable[[], Any]]:
            cursor = backend.list_summaries(limit=PAGE).cursor
            first_sql = RAW.format(collection=backend.config.collection, keyset="")
            next_sql = RAW.format(collection=backend.config.collection, keyset=KEYSET)
            position = backend.list_summaries(limit=PAGE).summaries[-1]
            key = position.updated_at.strftime(TIME_FORMAT)
            return {
                "newest 20": lambda: backend.list_summaries(limit=PAGE),
                "next 20 (cursor)": lambda: backend.list_summaries(limit=PAGE, cursor=cursor),
                "raw SDK, newest 20": lambda: client.sql(first_sql),
                "raw SDK, next 20": lambda: client.sql(
                    next_sql, params={"key": key, "after": position.session_id}),
                "list_sessions 20 (id order)": lambda: backend.list_sessions(limit=PAGE),
            }

        runs = {size: contenders(backend) for size, backend in backends.items()}
        times: dict[tuple[int, str], list[float]] = {}
        for _ in range(arguments.rounds):
            for name in runs[sizes[0]]:
                for size in sizes:  # side by side: each size in turn, in every round
                    times.setdefault((size, name), []).append(seconds_of(runs[size][name]))

        print(f"\nmedian of {arguments.rounds} rounds, ms "
              f"(sizes {', '.join(str(size) for size in sizes)})")
        for name in runs[sizes[0]]:
            medians = [statistics.median(times[(size, name)]) * 1000 for size in sizes]
            cells = "  ".join(f"{median:8.2f}" for median in medians)
            print(f"  {name:<28} {cells}   {sizes[-1]}/{sizes[0]}: "
                  f"{medians[-1] / medians[0]:.2f}x")

        turn = backends[sizes[0]]
        turn.append("turn", numbered_records(2))
        emu.reset_request_count()
        turn.fetch("turn", limit=10)
        turn.append("turn", numbered_records(2, prefix="b"))
        print(f"\na turn (read 10, append 2): {emu.request_count} requests "
              f"({', '.join(method for method, _ in emu.requests)}); the catalog adds none")
        for backend in backends.values():
            backend.close()


if __name__ == "__main__":
    main()
