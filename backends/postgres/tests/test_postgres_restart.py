"""The server restarts in the middle of a run of writers and readers, sync and async.

Every call either succeeds or raises BackendUnavailableError; no batch is ever
half-written; once the server is back, calls succeed without any help. Runs
after every other test (see conftest.py) and leaves the server running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from chathistory_postgres import PostgresBackend

from chathistory import BackendUnavailableError
from chathistory.testing.samples import numbered_records

BATCH = 3


def _local_cluster(url: str) -> tuple[str, str] | None:
    """(version, name) of the Debian cluster serving ``url`` on this machine, if any."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which("pg_lsclusters"):
        return None
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                             check=False).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(parts.port or 5432):
            return fields[0], fields[1]
    return None


def _pg_ctlcluster(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def cluster(postgres_url: str) -> Iterator[tuple[str, str]]:
    found = _local_cluster(postgres_url)
    if found is None:
        reason = "restarting the server needs pg_ctlcluster and a local CHATHISTORY_POSTGRES_URL"
        if os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1" and \
                not os.environ.get("CHATHISTORY_POSTGRES_URL"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield found
    status = subprocess.run(["pg_lsclusters", "--no-header", *found], capture_output=True,
                            text=True, check=False).stdout
    if "online" not in status:
        _pg_ctlcluster(found, "start")


class Writer:
    """Appends numbered batches to its own session and reads, recording every outcome."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcomes: dict[int, str] = {}   # batch -> "ok" | "unavailable"
        self.read_outcomes: Counter[str] = Counter()
        self.unexpected: list[BaseException] = []
        self.ok_after_restart = 0

    def batch(self, number: int) -> list[dict[str, Any]]:
        return numbered_records(BATCH, prefix=f"{self.name}-b{number}-")

    def record(self, number: int, error: BaseException | None, restarted: bool) -> None:
        if error is None:
            self.outcomes[number] = "ok"
            self.ok_after_restart += restarted
        elif isinstance(error, BackendUnavailableError):
            self.outcomes[number] = "unavailable"
        else:
            self.unexpected.append(error)

    def record_read(self, error: BaseException | None) -> None:
        if error is None:
            self.read_outcomes["ok"] += 1
        elif isinstance(error, BackendUnavailableError):
            self.read_outcomes["unavailable"] += 1
        else:
            self.unexpected.append(error)


@pytest.mark.restarts_server
def test_a_restart_mid_run_loses_no_batch_in_part(
    cluster: tuple[str, str], postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    backend = PostgresBackend.from_options(
        conninfo=postgres_url, schema=postgres_schema, table=table_name,
        min_size=2, max_size=6, timeout=4, connect_timeout=2)
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
        time.sleep(0.3)
        _pg_ctlcluster(cluster, "restart")
        restarted.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(w.ok_after_restart for w in writers) < 5:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    for writer in writers:
        assert writer.unexpected == [], f"{writer.name}: {writer.unexpected!r}"
        assert writer.ok_after_restart >= 5, f"{writer.name} did not recover: {writer.outcomes}"
    # The server is back: a new call succeeds at once, without retrying by hand.
    backend.append("after", numbered_records(1))
    assert len(backend.fetch("after")) == 1

    for writer in writers:
        stored = [record["data"]["content"] for record in backend.fetch(writer.name)]
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
