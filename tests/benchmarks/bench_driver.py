"""What the core's runner costs per operation, next to calling the driver directly.

Run: .venv/bin/python tests/benchmarks/bench_driver.py [--rounds 5] [--calls 3000]

On one SQLite file (WAL, synchronous=NORMAL, as the sqlite backend sets it),
each contender does the same statements for a fetch of a 10-message session
and an append of 2 messages:

- raw: sqlite3 calls written by hand (the floor);
- driver: the sqlite backend's driver called directly (its connection context,
  then ``send`` for each request), without the runner;
- runner: the backend's methods, run by the core's runner (the generator
  operation, the retry path, the span check);
- and in async: ``asyncio.to_thread`` of the driver path, against the backend's
  async twins (the runner's worker-thread path for a driver without native
  async), and a native async driver (aiosqlite) called directly against the
  same driver through the runner.

In each round the contenders take turns, thirty slices of calls each; every
figure is the median, over all slices of all rounds, of a slice's mean time
per call, all in this one process.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from chathistory.backend import BaseBackend
from chathistory.backends.sqlite import Many, SqliteBackend
from chathistory.driver import Call, Driver, Operation, Runner, operation
from chathistory.records import decode_record, encode_record

RECORDS = [{"type": "human", "data": {"content": f"message {n} of a benchmark session",
                                      "type": "human"}} for n in range(10)]
PAIR = RECORDS[:2]
SLICES = 30


def mean_time(call: Callable[[int], object], calls: int) -> float:
    started = time.perf_counter()
    for number in range(calls):
        call(number)
    return (time.perf_counter() - started) / calls


async def amean_time(call: Callable[[int], Awaitable[object]], calls: int) -> float:
    started = time.perf_counter()
    for number in range(calls):
        await call(number)
    return (time.perf_counter() - started) / calls


class AioSqliteDriver(Driver[None, aiosqlite.Connection, aiosqlite.Connection]):
    """A native async driver: one aiosqlite connection per event loop."""

    native_async = True

    def __init__(self, path: str) -> None:
        self.path = path

    def connection(self, call: Call) -> Any:
        raise NotImplementedError("async only")

    def send(self, connection: None, request: Any) -> Any:
        raise NotImplementedError("async only")

    async def open_pool(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        await connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @asynccontextmanager
    async def async_connection(self, pool: aiosqlite.Connection, call: Call
                               ) -> AsyncIterator[aiosqlite.Connection]:
        if call.transaction:
            await pool.execute("BEGIN IMMEDIATE")
        try:
            yield pool
            if pool.in_transaction:
                await pool.execute("COMMIT")
        except BaseException:
            if pool.in_transaction:
                await pool.execute("ROLLBACK")
            raise

    async def asend(self, connection: aiosqlite.Connection, request: Any) -> Any:
        if type(request) is Many:
            await connection.executemany(request.sql, request.rows)
            return []
        async with connection.execute(*request) as cursor:
            return await cursor.fetchall()

    async def close_pool(self, pool: aiosqlite.Connection) -> None:
        await pool.close()


class AioNotes(BaseBackend):
    name = "aionotes"
    select = "SELECT message FROM message_store WHERE session_id = ? ORDER BY id"
    insert = "INSERT INTO message_store (session_id, message) VALUES (?, ?)"

    def __init__(self, path: str) -> None:
        super().__init__(BaseBackend.Config())
        self.driver = AioSqliteDriver(path)
        self.runner = Runner(self, self.driver)

    # Only the two operations below are measured; the protocol's methods are not.
    def create_collection(self) -> None:
        raise NotImplementedError

    def append(self, session_id: str, records: Any) -> None:
        raise NotImplementedError

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[Any]:
        raise NotImplementedError

    def clear(self, session_id: str) -> None:
        raise NotImplementedError

    @operation()
    def _fetch(self, session_id: str) -> Operation[list[dict[str, Any]]]:
        rows = yield (self.select, (session_id,))
        return [decode_record(row[0]) for row in rows]

    @operation(write=True, transaction=True)
    def _append(self, session_id: str, records: list[dict[str, Any]]) -> Operation[None]:
        yield Many(self.insert, [(session_id, encode_record(record)) for record in records])

    afetch_op = _fetch.async_twin
    aappend_op = _append.async_twin


def one_round(directory: Path, number: int, calls: int) -> dict[str, list[float]]:
    path = str(directory / f"bench-{number}.sqlite3")
    backend = SqliteBackend(SqliteBackend.Config(path=path))
    backend.create_collection()
    backend.append("read", RECORDS)
    driver = backend.driver
    read_call = Call("sqlite", "fetch")
    write_call = Call("sqlite", "append", write=True, transaction=True)
    select = f'SELECT message FROM "{backend.config.table}" WHERE session_id = ? ORDER BY id'
    insert = f'INSERT INTO "{backend.config.table}" (session_id, message) VALUES (?, ?)'

    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA synchronous=NORMAL")

    def raw_fetch(_: int) -> object:
        return [decode_record(row[0]) for row in raw.execute(select, ("read",)).fetchall()]

    def raw_append(n: int) -> None:
        rows = [(f"w{n % 50}", encode_record(record)) for record in PAIR]
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(insert, rows)
        raw.execute("COMMIT")

    def driver_fetch(_: int) -> object:
        with driver.connection(read_call) as connection:
            rows = driver.send(connection, (select, ("read",)))
        return [decode_record(row[0]) for row in rows]

    def driver_append(n: int) -> None:
        rows = [(f"w{n % 50}", encode_record(record)) for record in PAIR]
        with driver.connection(write_call) as connection:
            driver.send(connection, Many(insert, rows))

    def runner_fetch(_: int) -> object:
        return backend.fetch("read")

    def runner_append(n: int) -> None:
        backend.append(f"w{n % 50}", PAIR)

    def nothing(_: int) -> object:
        return backend.fetch("read", limit=0)  # returns before yielding: the runner alone

    sync = {"raw fetch": raw_fetch, "driver fetch": driver_fetch,
            "runner fetch": runner_fetch, "raw append": raw_append,
            "driver append": driver_append, "runner append": runner_append,
            "runner, no I/O": nothing}
    order = list(sync.items())
    if number % 2:
        order.reverse()
    # In slices, taken in turn: a burst of load on the shared machine falls on all alike.
    results: dict[str, list[float]] = {name: [] for name in sync}
    for _ in range(SLICES):
        for name, call in order:
            results[name].append(mean_time(call, max(calls // SLICES, 1)))

    notes = AioNotes(path)
    acalls = max(calls // 3, 1)

    async def asynchronous() -> dict[str, list[float]]:
        assert notes.runner is not None
        pool = await notes.runner.pool()

        async def thread_driver_fetch(n: int) -> object:
            return await asyncio.to_thread(driver_fetch, n)

        async def thread_runner_fetch(_: int) -> object:
            return await backend.afetch("read")

        async def native_driver_fetch(_: int) -> object:
            async with notes.driver.async_connection(pool, read_call) as connection:
                rows = await notes.driver.asend(connection, (AioNotes.select, ("read",)))
            return [decode_record(row[0]) for row in rows]

        async def native_runner_fetch(_: int) -> object:
            return await notes.afetch_op("read")

        async def native_driver_append(n: int) -> None:
            rows = [(f"a{n % 50}", encode_record(record)) for record in PAIR]
            async with notes.driver.async_connection(pool, write_call) as connection:
                await notes.driver.asend(connection, Many(AioNotes.insert, rows))

        async def native_runner_append(n: int) -> None:
            await notes.aappend_op(f"a{n % 50}", PAIR)

        contenders = {"thread: driver fetch": thread_driver_fetch,
                      "thread: runner fetch": thread_runner_fetch,
                      "native: driver fetch": native_driver_fetch,
                      "native: runner fetch": native_runner_fetch,
                      "native: driver append": native_driver_append,
                      "native: runner append": native_runner_append}
        items = list(contenders.items())
        if number % 2:
            items.reverse()
        timed: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(SLICES):
            for name, call in items:
                timed[name].append(await amean_time(call, max(acalls // SLICES, 1)))
        await notes.aclose()
        return timed

    results.update(asyncio.run(asynchronous()))
    raw.close()
    backend.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        rounds = [one_round(Path(name), n, arguments.calls) for n in range(arguments.rounds)]

    def median(key: str) -> float:
        # Over every slice of every round: a burst of load spoils a few slices, not the figure.
        return statistics.median(time for row in rounds for time in row[key])

    print(f"per call: median over {arguments.rounds} rounds x {SLICES} slices "
          f"({arguments.calls} sync calls a round)")
    for name in rounds[0]:
        print(f"  {name:24} {median(name) * 1e6:9.1f} us")
    print("ratios")
    for what in ("fetch", "append"):
        raw, direct, ours = (median(f"{who} {what}") for who in ("raw", "driver", "runner"))
        print(f"  sync {what:6}  runner / driver = {ours / direct:5.2f}x   "
              f"runner / raw = {ours / raw:5.2f}x   (+{(ours - direct) * 1e6:.1f} us)")
    thread_direct, thread_ours = median("thread: driver fetch"), median("thread: runner fetch")
    print(f"  thread fetch  runner / driver = {thread_ours / thread_direct:5.2f}x")
    for what in ("fetch", "append"):
        direct, ours = median(f"native: driver {what}"), median(f"native: runner {what}")
        print(f"  native {what:6} runner / driver = {ours / direct:5.2f}x   "
              f"(+{(ours - direct) * 1e6:.1f} us)")


if __name__ == "__main__":
    main()
