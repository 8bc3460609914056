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
is the history's layer), "ops" drives the backend's fetch and append operations (its
generators) on the backend's driver without the core's runner (backend - ops: the
runner and the operation methods; ops - driver: the operations' own code), "driver"
sends the two statements through the backend's driver, as the runner does, without it
(driver - pool: the driver's leases and send); "same" and "asame" are raw psycopg on one
connection. Each does the floor's work besides: the messages made from the records
read, the new ones turned into records.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
# The callgrind counting the core's count_sqlite_turn.py uses too.
sys.path.insert(0, str(Path(__file__).parents[3] / "tests" / "benchmarks"))

import bench_postgres as bench
import callgrind
from langchain_core.messages import message_to_dict, messages_from_dict

from chathistory import encode_record

CONTENDERS = ("ours", "backend", "ops", "driver", "pool", "same", "aours", "apool", "asame")


def layer_turns(contenders: bench.Contenders) -> dict[str, Callable[[str, Any], None]]:
    """The turns of "backend" and "driver" (see the module's docstring)."""
    backend: Any = contenders.factory.backend
    driver, statements, sql = backend.driver, backend.statements, backend._sql
    fetch, append = backend.runner.call("fetch"), backend.runner.call("append", write=True)

    def drive(call: Any, operation: Any) -> Any:
        """The runner's loop (chathistory.runner.Runner._once) without retries or spans."""
        try:
            request = operation.send(None)
        except StopIteration as returned:
            return returned.value
        with driver.connection(call) as connection:
            while True:
                try:
                    request = operation.send(driver.send(connection, request))
                except StopIteration as returned:
                    return returned.value

    def ops_turn(session_id: str, limit: Any) -> None:
        kind = type(backend)
        messages_from_dict(drive(fetch, kind.fetch.steps(backend, session_id)))
        records = [message_to_dict(message) for message in bench.TURN]
        drive(append, kind.append.steps(backend, session_id, records))

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

    return {"backend": backend_turn, "ops": ops_turn, "driver": driver_turn}


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


def main() -> None:
    callgrind.main(__file__, __doc__.splitlines()[0], CONTENDERS, 200, run_turns,
                   [("ours", "backend"), ("backend", "ops"), ("ops", "driver"),
                    ("driver", "pool"), ("ours", "pool"), ("pool", "same"), ("ours", "same"),
                    ("aours", "apool"), ("apool", "asame"), ("aours", "asame")])


if __name__ == "__main__":
    main()
