"""Instructions per turn, ours against the pooled floor, counted by callgrind.

    .venv/bin/python backends/postgres/benchmarks/count_turn.py [--turns 200]

Runs each contender of bench_postgres's test 1 (a turn on a 20-message session:
build the history, read it, append two messages) alone in a process of its own
under ``valgrind --tool=callgrind``: ten turns to warm up, then ``--turns`` turns
inside one call of ``functools.reduce``, the only code callgrind counts
(``--toggle-collect``), in the main thread (the pools' worker threads wake on
timers). Hash randomization is off (``PYTHONHASHSEED=0``). Instruction counts
are reproducible where times are not (a turn's client CPU swings by tens of
microseconds between runs): two runs of a contender agree within about 1%.

Contenders: "ours" and "pool" (raw psycopg on psycopg_pool, the backend's own
statements), sync, and "aours" and "apool", async. Between them, to tell the layers
apart: "backend" calls the backend's fetch and append (no ChatHistory: ours - backend
is the history's layer), "driver" sends the two statements through the backend's
driver, as the runner does, without it (backend - driver: the runner and the
operations; driver - pool: the driver's leases and send). Each does the floor's work
besides: the messages made from the records read, the new ones turned into records.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_postgres as bench
from langchain_core.messages import message_to_dict, messages_from_dict

from chathistory import encode_record

CONTENDERS = ("ours", "backend", "driver", "pool", "aours", "apool")


def layer_turns(contenders: bench.Contenders) -> dict[str, Callable[[str, Any], None]]:
    """The turns of "backend" and "driver" (see the module's docstring)."""
    backend: Any = contenders.factory.backend
    driver, statements, sql = backend.driver, backend.statements, backend._sql
    fetch, append = backend.runner.call("fetch"), backend.runner.call("append", write=True)

    def backend_turn(session_id: str, limit: Any) -> None:
        messages_from_dict(backend.fetch(session_id))
        backend.append(session_id, [message_to_dict(message) for message in bench.TURN])

    def driver_turn(session_id: str, limit: Any) -> None:
        with driver.connection(fetch) as connection:
            rows = driver.send(connection, (statements.select_all, (session_id,)))
        messages_from_dict(sql.records_from_texts([row[0] for row in rows]))
        batch = sql.jsonb_batch([encode_record(message_to_dict(message))
                                 for message in bench.TURN], "chathistory")
        with driver.connection(append) as connection:
            driver.send(connection, (statements.insert, (session_id, session_id, batch)))

    return {"backend": backend_turn, "driver": driver_turn}


def run_turns(contender: str, turns: int) -> None:
    """Ten turns of ``contender``, then ``turns`` more inside ``functools.reduce`` (the ones
    counted), each on a session of its own holding 20 messages."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with bench.benchmark_schema() as admin:
        contenders = bench.Contenders(admin)
        loop.run_until_complete(contenders.open_async())
        ids = bench.sessions(f"count-{contender}", turns + 10, False)
        bench.fill(admin, bench.OURS, ids, 20, False)
        gc.collect()
        gc.freeze()
        turn: Callable[[str, Any], Any] = (layer_turns(contenders).get(contender)
                                           or getattr(contenders, f"{contender}_turn"))

        def step(_: None, session_id: str) -> None:
            if contender.startswith("a"):
                loop.run_until_complete(turn(session_id, None))
            else:
                turn(session_id, None)

        for session_id in ids[:10]:
            step(None, session_id)
        functools.reduce(step, ids[10:], None)
        loop.run_until_complete(contenders.close_async())
        contenders.close()
    loop.close()


def count(contender: str, turns: int) -> float:
    """The instructions of one turn of ``contender``, over ``turns`` turns."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        "--collect-atstart=no", "--toggle-collect=functools_reduce",
                        f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--child", contender, str(turns)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        text = Path(f"{out}-01").read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    assert found, "no totals in callgrind's output"
    return int(found.group(1)) / turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns counted")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_turns(args.child[0], int(args.child[1]))
        return
    per_turn = {}
    for contender in args.contenders:
        per_turn[contender] = count(contender, args.turns)
        print(f"{contender:6} {per_turn[contender] / 1e6:.3f}M instructions per turn", flush=True)
    for ours, floor in (("ours", "backend"), ("backend", "driver"), ("driver", "pool"),
                        ("ours", "pool"), ("aours", "apool")):
        if ours in per_turn and floor in per_turn:
            print(f"{ours} / {floor}: {per_turn[ours] / per_turn[floor]:.3f}x, "
                  f"{(per_turn[ours] - per_turn[floor]) / 1e3:.0f}k more")


if __name__ == "__main__":
    main()
