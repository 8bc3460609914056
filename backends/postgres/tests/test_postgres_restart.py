"""A private server restarts: idle connections are replaced before use, and a restart in the
middle of a run of writers and readers loses no batch in part.

Every call either succeeds or raises BackendUnavailableError; once the server
is back, calls succeed without any help. The server is a private cluster
(conftest.py's ``private_postgres``), never the one at CHATHISTORY_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from chathistory_postgres import PostgresBackend

from chathistory import BackendUnavailableError
from chathistory.testing import numbered_records, wait_until

if TYPE_CHECKING:
    from conftest import PrivateCluster

BATCH = 3


def _contents(records: list[dict[str, Any]]) -> list[str]:
    return [record["data"]["content"] for record in records]


def test_connections_the_server_closed_are_replaced_before_an_append_is_sent(
    private_postgres: PrivateCluster
) -> None:
    backend = PostgresBackend.from_options(conninfo=private_postgres.url, min_size=2,
                                           max_size=2)
    backend.create_collection()

    async def append_async(prefix: str) -> list[str]:
        await backend.aappend("s", numbered_records(1, prefix=prefix))
        return _contents(await backend.afetch("s"))

    async def scenario() -> None:
        assert await append_async("async-before") == ["before0", "async-before0"]
        # Every pooled connection, sync and async, is now closed by the server.
        await asyncio.to_thread(private_postgres.restart)
        # Not "lost while the batch was being written": taking a connection found the
        # closed connections before anything was sent, so each append ran once.
        backend.append("s", numbered_records(1, prefix="after"))
        assert await append_async("async-after") == [
            "before0", "async-before0", "after0", "async-after0"]
        await backend.aclose()

    backend.append("s", numbered_records(1, prefix="before"))
    asyncio.run(scenario())
    backend.close()


def test_connections_killed_while_idle_are_replaced_without_waiting_for_the_pool(
    private_postgres: PrivateCluster
) -> None:
    """psycopg_pool sleeps 1 s after a failed ``check`` before lending another connection:
    with a timeout below that, a call after a kill would fail. It must not."""
    import psycopg

    backend = PostgresBackend.from_options(conninfo=private_postgres.url, min_size=2,
                                           max_size=2, async_pool_size=2, timeout=0.8)
    backend.create_collection()

    async def scenario(prefix: str) -> list[str]:
        await backend.aappend("s", numbered_records(1, prefix=prefix))
        return _contents(await backend.afetch("s"))

    backend.append("s", numbered_records(1, prefix="before"))
    asyncio.run(scenario("async-before"))
    with psycopg.connect(private_postgres.url, autocommit=True) as admin:
        for _ in range(3):
            pids = [pid for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = 'chathistory-postgres'").fetchall()]
            assert pids, "the backend's connections should have been there to kill"
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                          (pids,))
            wait_until(lambda killed=pids: not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (killed,)).fetchall(),
                "the killed connections closed", seconds=120)
            backend.append("s", numbered_records(1, prefix="sync"))
            assert asyncio.run(scenario("async"))[-2:] == ["sync0", "async0"]
    assert len(backend.fetch("s")) == 8
    backend.close()


class Writer:
    """Appends numbered batches to its own session and reads, recording every outcome."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcomes: dict[int, str] = {}   # batch -> "ok" | "unavailable"
        self.reads: Counter[str] = Counter()
        self.unexpected: list[BaseException] = []
        self.ok_before = self.ok_after = 0

    def batch(self, number: int) -> list[dict[str, Any]]:
        return numbered_records(BATCH, prefix=f"{self.name}-b{number}-")

    def record(self, number: int, error: BaseException | None, restarted: bool) -> None:
        if error is None:
            self.outcomes[number] = "ok"
            if restarted:
                self.ok_after += 1
            else:
                self.ok_before += 1
        elif isinstance(error, BackendUnavailableError):
            self.outcomes[number] = "unavailable"
        else:
            self.unexpected.append(error)

    def record_read(self, error: BaseException | None) -> None:
        if error is None or isinstance(error, BackendUnavailableError):
            self.reads["ok" if error is None else "unavailable"] += 1
        else:
            self.unexpected.append(error)


def test_a_restart_mid_run_loses_no_batch_in_part(private_postgres: PrivateCluster) -> None:
    backend = PostgresBackend.from_options(
        conninfo=private_postgres.url, min_size=2, max_size=6, timeout=4, connect_timeout=2)
    backend.create_collection()
    stop = threading.Event()
    restarted = threading.Event()
    writers = [Writer(f"sync{number}") for number in range(3)] + [Writer("async0")]

    def run_sync(writer: Writer) -> None:
        number = 0
        while not stop.is_set():
            error: BaseException | None = None
            try:
                backend.append(writer.name, writer.batch(number))
            except BaseException as exc:
                error = exc
            writer.record(number, error, restarted.is_set())
            number += 1
            try:
                backend.fetch(writer.name, limit=5)
                writer.record_read(None)
            except BaseException as exc:
                writer.record_read(exc)

    def run_async(writer: Writer) -> None:
        async def loop() -> None:
            number = 0
            while not stop.is_set():
                error: BaseException | None = None
                try:
                    await backend.aappend(writer.name, writer.batch(number))
                except BaseException as exc:
                    error = exc
                writer.record(number, error, restarted.is_set())
                number += 1
                try:
                    await backend.afetch(writer.name, limit=5)
                    writer.record_read(None)
                except BaseException as exc:
                    writer.record_read(exc)
            await backend.aclose()

        asyncio.run(loop())

    threads = [threading.Thread(target=run_sync, args=(writer,)) for writer in writers[:3]]
    threads.append(threading.Thread(target=run_async, args=(writers[3],)))
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: min(w.ok_before for w in writers) >= 3, "every writer writing",
                   seconds=120)
        private_postgres.restart()
        restarted.set()
        wait_until(lambda: min(w.ok_after for w in writers) >= 5 or
                   any(w.unexpected for w in writers), "every writer recovering", seconds=120)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    for writer in writers:
        assert writer.unexpected == [], f"{writer.name}: {writer.unexpected!r}"
    # The server is back: a new call succeeds at once, without retrying by hand.
    backend.append("after", numbered_records(1))
    assert len(backend.fetch("after")) == 1

    for writer in writers:
        stored = _contents(backend.fetch(writer.name))
        batches = [text.rsplit("-", 1)[0] for text in stored]
        present = []
        for start in range(0, len(stored), BATCH):
            group = batches[start:start + BATCH]
            assert len(set(group)) == 1 and len(group) == BATCH, f"a batch was split: {group}"
            present.append(int(group[0].rsplit("-b", 1)[1]))
        assert present == sorted(present), "batches out of order"
        for number, outcome in writer.outcomes.items():
            if outcome == "ok":
                assert number in present, f"{writer.name}: acknowledged batch {number} lost"
        assert set(present) <= set(writer.outcomes), "a batch nobody wrote"
    backend.close()
