"""The async twins across event loops: asyncio.run per call, and loops in several threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chathistory_postgres import PostgresBackend

from chathistory.testing.samples import numbered_records


@pytest.fixture
def backend(postgres_url: str, postgres_schema: str, table_name: str
            ) -> Iterator[PostgresBackend]:
    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name, min_size=1, max_size=8)
    backend.create_collection()
    yield backend
    backend.close()


def _in_thread(target: Any, timeout: float) -> None:
    """Run ``target`` in a thread; fail (instead of hanging the suite) if it does not end."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s: an event loop hangs"
    if failures:
        raise failures[0]


def test_asyncio_run_per_call_never_hangs_at_exit(backend: PostgresBackend) -> None:
    # Each asyncio.run ends while the loop's pool is still growing: its
    # connection-opening tasks are cancelled mid-way, and the loop must still end.
    async def burst(round_number: int) -> None:
        await asyncio.gather(*(
            backend.aappend("s", numbered_records(1, prefix=f"r{round_number}t{task}-"))
            for task in range(8)))

    def rounds() -> None:
        for round_number in range(12):
            asyncio.run(burst(round_number))

    _in_thread(rounds, timeout=60)
    assert len(backend.fetch("s")) == 12 * 8


def test_loops_in_several_threads_at_once(backend: PostgresBackend) -> None:
    def worker(thread: int) -> None:
        async def scenario() -> None:
            for batch in range(5):
                await backend.aappend(f"thread-{thread}",
                                      numbered_records(2, prefix=f"b{batch}-"))
            assert len(await backend.afetch(f"thread-{thread}")) == 10

        asyncio.run(scenario())

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(4)]

    def run_all() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    _in_thread(run_all, timeout=60)
    for number in range(4):
        assert len(backend.fetch(f"thread-{number}")) == 10


def test_one_long_lived_loop_keeps_one_pool(backend: PostgresBackend) -> None:
    async def scenario() -> None:
        for _ in range(20):
            await backend.aappend("s", numbered_records(1))
            await backend.afetch("s", limit=1)
        await backend.aclose()
        # After aclose, the next call opens a new pool.
        assert len(await backend.afetch("s")) == 20

    asyncio.run(scenario())
