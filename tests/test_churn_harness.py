"""The churn harness catches a store that loses, duplicates, tears or reorders batches."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from chathistory import BackendUnavailableError, get_backend
from chathistory.testing.churn import (
    ChurnSettings,
    ChurnStore,
    Tally,
    Writers,
    async_writer,
    find_problems,
    run_churn,
    sync_writer,
)


def contents(*numbers: int) -> list[str]:
    return [f"{number}:{part}" for number in numbers for part in range(2)]


@pytest.mark.parametrize("found", [contents(0, 1, 2), contents(0, 1, 2, 3)],
                         ids=["exact", "one more batch the deadline cut short"])
def test_a_whole_history_passes(found: list[str]) -> None:
    assert find_problems({"s": found}, {"s": 3}) == []


@pytest.mark.parametrize(("found", "named"), [
    (contents(0, 2), "lost 1"),
    (contents(0, 1, 1, 2), "duplicated 1"),
    (contents(0, 1, 2, 3, 3), "duplicated 3"),
    ([*contents(0), "1:0", *contents(2)], "torn 1"),
    (contents(0, 2, 1), "out of order"),
    (contents(0, 1, 2, 3, 4), "not written 4"),
    ([], "lost 0, 1, 2"),
], ids=["lost", "duplicated", "cut-short batch twice", "torn", "out of order", "stranger",
        "all lost"])
def test_a_broken_history_is_named(found: list[str], named: str) -> None:
    problems = find_problems({"s": found, "fine": contents(0, 1, 2)}, {"s": 3, "fine": 3})
    assert len(problems) == 1
    assert problems[0].startswith("s: ")
    assert named in problems[0]


class ListStore:
    """A store in a dict; subclasses break it as a faulty backend would."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[dict[str, Any]]] = {}

    def store(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        self.sessions.setdefault(session_id, []).extend(dict(record) for record in records)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None:
        self.store(session_id, records)

    def fetch(self, session_id: str, /, *, limit: int | None = None) -> list[dict[str, Any]]:
        records = self.sessions.get(session_id, [])
        return records[-limit:] if limit else list(records)

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None:
        self.append(session_id, records)

    async def afetch(self, session_id: str, /, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        return self.fetch(session_id, limit=limit)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def contents(self) -> dict[str, list[str]]:
        return {session: [record["data"]["content"] for record in records]
                for session, records in self.sessions.items()}


def number_of(records: Sequence[Mapping[str, Any]]) -> int:
    return int(records[0]["data"]["content"].split(":")[0])


class DroppingStore(ListStore):
    """Acknowledges batch 3 and stores nothing."""

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None:
        if number_of(records) != 3:
            self.store(session_id, records)


class DuplicatingStore(ListStore):
    """Stores batch 2 twice, as a driver that retried a write whose reply was lost would."""

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None:
        self.store(session_id, records)
        if number_of(records) == 2:
            self.store(session_id, records)


class FlakyStore(ListStore):
    """Fails every third append once: before storing it, or after (the reply lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None:
        self.calls += 1
        if self.calls % 3 == 0:
            if self.calls % 2 == 0:
                self.store(session_id, records)
            raise BackendUnavailableError("connection lost: stored entirely or not at all")
        self.store(session_id, records)


def write(store: ListStore, mode: str, batches: int = 8) -> dict[str, int]:
    """Run one writer of ``mode`` (sync or async) on ``store``; its session's ``done``."""
    tally = Tally(stall_after=10.0)
    deadline = time.time() + 30
    if mode == "sync":
        sync_writer(store, "s", batches, deadline, tally, ChurnSettings())
    else:
        asyncio.run(async_writer(store, "s", batches, deadline, tally, ChurnSettings()))
    return {"s": tally.done}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("store", "named"), [(DroppingStore, "lost 3"),
                                              (DuplicatingStore, "duplicated 2")])
def test_a_broken_writer_is_reported(mode: str, store: type[ListStore], named: str) -> None:
    broken = store()
    done = write(broken, mode)
    [problem] = find_problems(broken.contents(), done)
    assert named in problem


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_writer_learns_by_reading_whether_a_failed_batch_was_stored(mode: str) -> None:
    flaky = FlakyStore()
    done = write(flaky, mode)
    assert done == {"s": 8}
    assert find_problems(flaky.contents(), done) == []
    assert flaky.calls > 8  # some appends failed, and were made again only when not stored


# -- a whole phase, in a spawned writer process, on a real SQLite file ------------------------


def open_sqlite(path: str, drop: int | None, table: str) -> ChurnStore:
    store: ChurnStore = get_backend("sqlite", path=path, table=table)
    if drop is None:
        return store

    class Dropping:
        """The backend, but batch ``drop`` of one session is acknowledged and not stored."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def append(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None:
            if not (session_id == "p0-sync0" and number_of(records) == drop):
                store.append(session_id, records)

    dropping: ChurnStore = Dropping()
    return dropping


class SqliteServer:
    """A "server" that is a file: nothing to kill or crash."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def prepare(self, target: str) -> None:
        backend = get_backend("sqlite", path=self.path, table=target)
        backend.create_collection()
        backend.close()

    def kill_connections(self, share: float) -> int:
        return 0

    def crash(self) -> None:
        pass

    def start(self) -> None:
        pass

    def remove(self) -> None:
        pass

    def stored(self, target: str, sessions: Sequence[str]) -> Mapping[str, Sequence[str]]:
        backend = get_backend("sqlite", path=self.path, table=target)
        try:
            return {session: [record["data"]["content"] for record in backend.fetch(session)]
                    for session in sessions}
        finally:
            backend.close()


@pytest.mark.parametrize("drop", [None, 4], ids=["whole", "a batch dropped"])
def test_a_phase_checks_what_its_writer_processes_stored(
        tmp_path: Path, drop: int | None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The spawned writer process unpickles open_sqlite by its module's name, tests.<this>.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    path = str(tmp_path / "churn.db")
    options = argparse.Namespace(batches=10, deadline=60.0, phases="steady")
    settings = ChurnSettings(processes=1, threads=2, tasks=1)
    results = run_churn(SqliteServer(tmp_path / "churn.db"),
                        [Writers(partial(open_sqlite, path, drop))], options, settings,
                        "sqlite")
    [steady] = results["steady"]
    assert steady.batches == 30
    output = capsys.readouterr().out
    if drop is None:
        assert steady.problems == []
        assert "verified: nothing lost" in output
    else:
        [problem] = steady.problems
        assert problem.startswith("p0-sync0: 18 records, expected 20; first difference at 8")
        assert "lost 4" in problem
        assert "PROBLEMS in 1 sessions" in output
