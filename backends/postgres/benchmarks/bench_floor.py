"""The floor under issue 18's target: raw psycopg on psycopg_pool against one bare connection.

    .venv/bin/python backends/postgres/benchmarks/bench_floor.py [--rounds 9] [--turns 200]

Runs only bench_postgres's floors, a turn on a 20-message session each (the backend's
own read and insert, two round trips, no chathistory code): "same" on one autocommit
connection, "pool" taking a connection per statement from a ``ConnectionPool`` sized
as the backend's (min 1, max 10), and async "asame", "apool" on an
``AsyncConnectionPool`` of the backend's ``async_pool_size`` (4), and "apool1" on one
of a single connection. psycopg_pool lends the connection idle longest, so a sequence
of calls goes round all of the pool's connections: apool / apool1 is what that costs.
Then the floors again ("same+", "pool+"...) beside "raw" and langchain-postgres's
class, the company ours keeps in bench_postgres's target pass: code that only one
contender runs (the pool's, or ours) is evicted from the CPU's caches by the others'.
A ratio is the median over the rounds of the ratio within each round; the contenders
of a pass take turns, the order shuffled at every step.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import gc
import sys
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).parent))

import bench_postgres as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--turns", type=int, default=200, help="turns per round")
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gc.collect()
    gc.freeze()
    with bench.benchmark_schema() as admin:
        floors = bench.Contenders(admin, synchronous_commit="off")
        loop.run_until_complete(floors.open_async())
        single: AsyncConnectionPool[Any] = AsyncConnectionPool(
            bench.URL, kwargs={"autocommit": True, "options": floors.options},
            min_size=1, max_size=1, open=False)
        loop.run_until_complete(single.open(wait=True))
        on_single = copy.copy(floors)  # its apool_turn, on the pool of one connection
        on_single.apool = single
        count = args.rounds * args.turns
        turns: dict[str, Any] = {
            "same": floors.same_turn, "pool": floors.pool_turn, "asame": floors.asame_turn,
            "apool": floors.apool_turn, "apool1": on_single.apool_turn}
        for kind in ("", "a"):  # beside the peer: the company ours keeps in bench_postgres
            for name, turn in floors.turns(kind == "a").items():
                if name in ("same", "pool", "raw", "peer"):
                    turns[f"{kind}{name}+"] = turn
        ids = {name: bench.sessions(f"floor-{name}", count, name.endswith("peer+"))
               for name in turns}
        for table, uuids in ((bench.OURS, False), (bench.PEER, True)):
            bench.fill(admin, table, [one for name, some in ids.items()
                                      if name.endswith("peer+") == uuids for one in some],
                       20, uuids)
        admin.execute("ANALYZE " + floors.statements.qualified_table)

        def operations(kind: tuple[str, ...], first: int) -> dict[str, Any]:
            return {name: functools.partial(lambda turn, some, i: turn(some[first + i], None),
                                            turns[name], ids[name]) for name in kind}

        def one_round(round_number: int) -> tuple[bench.Medians, bench.Medians]:
            first = round_number * args.turns
            wall, cpu = {}, {}
            for kind in (("same", "pool"), ("same+", "pool+", "raw+", "peer+")):
                some_wall, some_cpu = bench.measure(operations(kind, first), args.turns,
                                                    round_number)
                wall |= some_wall
                cpu |= some_cpu
            for kind in (("asame", "apool", "apool1"), ("asame+", "apool+", "araw+", "apeer+")):
                some_wall, some_cpu = loop.run_until_complete(bench.ameasure(
                    operations(kind, first), args.turns, round_number))
                wall |= some_wall
                cpu |= some_cpu
            return wall, cpu

        results = bench.collect(args.rounds, one_round)
        bench.show_rounds(f"floors, turn on 20 messages ({args.rounds} rounds x {args.turns}, "
                          "us)", results)
        wall = results.wall
        print(f"  sync:  pool / same  {bench.ratio(wall, 'pool', 'same'):.3f}x; beside the peer "
              f"{bench.ratio(wall, 'pool+', 'same+'):.3f}x")
        print(f"  async: apool / asame {bench.ratio(wall, 'apool', 'asame'):.3f}x "
              f"(pool of {floors.async_pool_size}); apool1 / asame "
              f"{bench.ratio(wall, 'apool1', 'asame'):.3f}x (pool of 1); apool / apool1 "
              f"{bench.ratio(wall, 'apool', 'apool1'):.3f}x; apool / asame beside the peer "
              f"{bench.ratio(wall, 'apool+', 'asame+'):.3f}x")
        print("  per round: pool/same " + " ".join(
            f"{p / s:.3f}" for p, s in zip(wall["pool"], wall["same"], strict=True)))
        print("  per round: apool/asame " + " ".join(
            f"{p / s:.3f}" for p, s in zip(wall["apool"], wall["asame"], strict=True)))
        loop.run_until_complete(single.close())
        loop.run_until_complete(floors.close_async())
        floors.close()
    loop.close()


if __name__ == "__main__":
    main()
