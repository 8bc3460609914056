"""The async twins and event loops, by the core's policy: one async pool per event loop.

Each loop gets its own pool on its first async call; ``aclose()`` closes it in
its loop, and so does the loop's end (``asyncio.run`` finalizes the runner's
async generator that holds it). A pool whose loop ended otherwise is dropped.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend

from chathistory.testing import numbered_records


@pytest.fixture
def options(postgres_url: str, postgres_schema: str, table_name: str) -> dict[str, object]:
    return {"conninfo": postgres_url, "schema": postgres_schema, "table": table_name,
            "min_size": 1, "max_size": 4, "async_pool_size": 2}


@pytest.fixture
def backend(options: dict[str, object]) -> Iterator[PostgresBackend]:
    backend = PostgresBackend.from_options(**options)
    backend.create_collection()
    yield backend
    backend.close()


def test_asyncio_run_per_call_with_aclose_in_each_loop(backend: PostgresBackend) -> None:
    # Each loop ends right after a burst, its pool closed by aclose(): the next loop
    # opens a new one, and no loop waits for the pool at its end.
    async def burst(round_number: int) -> None:
        await asyncio.gather(*(
            backend.aappend("s", numbered_records(1, prefix=f"r{round_number}t{task}-"))
            for task in range(8)))
        await backend.aclose()

    for round_number in range(12):
        asyncio.run(burst(round_number))
    assert len(backend.fetch("s")) == 12 * 8


def test_loops_that_end_without_aclose_do_not_hang(backend: PostgresBackend) -> None:
    # The pool is fixed-size: when asyncio.run cancels the loop's tasks at its end,
    # no pool task is opening a connection (one that would swallow the cancellation
    # and keep the loop waiting forever).
    async def burst(round_number: int) -> None:
        await asyncio.gather(*(
            backend.aappend("s", numbered_records(1, prefix=f"r{round_number}t{task}-"))
            for task in range(8)))

    for round_number in range(12):
        asyncio.run(burst(round_number))
    assert len(backend.fetch("s")) == 12 * 8


def test_two_open_loops_each_use_their_own_pool(backend: PostgresBackend) -> None:
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(backend.aappend("s", numbered_records(1)))
        first_pool = first.run_until_complete(backend.runner.pool())

        async def from_another_loop() -> None:
            assert await backend.runner.pool() is not first_pool
            await backend.aappend("s", numbered_records(1, prefix="other"))
            assert len(await backend.afetch("s")) == 2

        asyncio.run(from_another_loop())
        assert not first_pool.closed  # the other loop's end closed its own pool only
        assert len(first.run_until_complete(backend.afetch("s"))) == 2
        first.run_until_complete(backend.aclose())
        assert first_pool.closed
    finally:
        first.close()


def test_the_pool_of_a_loop_that_ended_is_replaced_by_the_next_loop(
    backend: PostgresBackend, admin: psycopg.Connection[Any]
) -> None:
    # asyncio.run per call without aclose(): each loop's pool is closed at the loop's
    # end, and its connections go with it (none pile up).
    def ours() -> int:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                            (pids,)).fetchone()
        return int(row[0]) if row else 0

    async def append_and_name(round_number: int) -> list[int]:
        await backend.aappend("s", numbered_records(1, prefix=f"r{round_number}-"))
        pool = await backend.runner.pool()
        named: list[int] = []
        for _ in range(pool.max_size):
            async with pool.connection() as connection:
                named.append(connection.info.backend_pid)
        return named

    pids: list[int] = []
    for round_number in range(6):
        pids += asyncio.run(append_and_name(round_number))
    assert len(backend.fetch("s")) == 6
    deadline = time.monotonic() + 10
    while ours() > 0 and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert ours() == 0


def test_one_backend_per_loop_in_several_threads(options: dict[str, object]) -> None:
    errors: list[BaseException] = []

    def worker(thread: int) -> None:
        async def scenario() -> None:
            backend = PostgresBackend.from_options(**options)
            try:
                await backend.acreate_collection()
                for batch in range(5):
                    await backend.aappend(f"thread-{thread}",
                                          numbered_records(2, prefix=f"b{batch}-"))
                assert len(await backend.afetch(f"thread-{thread}")) == 10
            finally:
                await backend.aclose()

        try:
            asyncio.run(scenario())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reader = PostgresBackend.from_options(**options)
    assert [len(reader.fetch(f"thread-{number}")) for number in range(4)] == [10] * 4
    reader.close()


def test_one_long_lived_loop_keeps_one_pool(backend: PostgresBackend) -> None:
    async def scenario() -> None:
        pool = await backend.runner.pool()
        assert pool.min_size == pool.max_size == 2  # fixed: async_pool_size
        for _ in range(20):
            await backend.aappend("s", numbered_records(1))
            await backend.afetch("s", limit=1)
        assert await backend.runner.pool() is pool
        await backend.aclose()
        assert pool.closed
        # After aclose, the next call opens a new pool.
        assert len(await backend.afetch("s")) == 20
        assert await backend.runner.pool() is not pool
        await backend.aclose()

    asyncio.run(scenario())
