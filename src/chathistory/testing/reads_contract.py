"""Reads create nothing: the part of the contract that watches the store itself.

``fetch``, the listing and bulk-read capabilities, and so the CLI's
read-only commands (``show``, ``sessions``, ``export``) must create no file,
directory, table, schema or key, whether the store exists or not: a misspelt
path or table name is an error (``CollectionMissingError``) or an empty
result, never a new, empty store. :class:`~chathistory.testing.BackendContract`
includes these tests; two fixtures tell them where to look:

- ``store_snapshot``: a callable returning what the store holds, as anything
  comparable (names of files, tables, keys). The default lists every path
  under the test's ``tmp_path``, which covers a backend that keeps its files
  there; a backend on a server overrides it (the tables of its schema, the
  keys under its prefix).
- ``uncreated_backend``: a backend like ``backend`` whose store was never
  created (a directory, schema, table or key prefix that does not exist).
  Without it, the test on a store that does not exist skips, saying so.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chathistory.backend import Backend
from chathistory.capabilities import (
    CopiesRecordText,
    FetchesInBulk,
    ListsSessions,
    TracksWriteTimes,
)
from chathistory.errors import CollectionMissingError
from chathistory.testing.blocking import run_without_blocking
from chathistory.testing.samples import numbered_records
from chathistory.transfer import export_sessions, list_session_ids

__all__ = ["ReadsContract", "StoreSnapshot"]

StoreSnapshot = Callable[[], Any]
"""What the store holds now, as a value that compares equal while nothing was created."""

MakeSessionId = Callable[[str], str]


def _reads(backend: Backend, session_ids: list[str]) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Every read ``backend`` declares, named, each ready to run once."""
    first = session_ids[0]
    yield "fetch", lambda: backend.fetch(first)
    yield "fetch(limit=1)", lambda: backend.fetch(first, limit=1)
    yield "afetch", lambda: run_without_blocking(backend.afetch(first))
    if isinstance(backend, ListsSessions):
        lister = backend
        yield "list_sessions", lambda: lister.list_sessions()
        yield "alist_sessions", lambda: run_without_blocking(lister.alist_sessions())
        # `chathistory sessions`, and `export` without ids, page through this.
        yield "list_session_ids", lambda: list_session_ids(lister)
    if isinstance(backend, TracksWriteTimes):
        tracker = backend
        yield "last_write", lambda: tracker.last_write(first)
        yield "alast_write", lambda: run_without_blocking(tracker.alast_write(first))
    if isinstance(backend, FetchesInBulk):
        bulk = backend
        yield "fetch_many", lambda: bulk.fetch_many(session_ids)
        yield "afetch_many", lambda: run_without_blocking(bulk.afetch_many(session_ids))
    if isinstance(backend, CopiesRecordText):
        text = backend
        yield "fetch_many_text", lambda: text.fetch_many_text(session_ids)
        yield "afetch_many_text", lambda: run_without_blocking(
            text.afetch_many_text(session_ids))
    # What `chathistory export SESSION ...` does with the store.
    yield "export", lambda: export_sessions(backend, io.StringIO(), session_ids).lines


def _is_empty(result: Any) -> bool:
    return result is None or result == 0 or not result


class ReadsContract:
    """The reads-create-nothing tests; mixed into BackendContract."""

    @pytest.fixture
    def store_snapshot(self, tmp_path: Path) -> StoreSnapshot:
        """What the store holds now. Default: every path under the test's ``tmp_path``.

        Override it for a store outside ``tmp_path``: return, say, the sorted
        names of the tables in the backend's schema, or of the keys under its
        prefix. It must see the stores of both ``backend`` and
        ``uncreated_backend``.
        """
        def paths() -> list[str]:
            return sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))

        return paths

    @pytest.fixture
    def uncreated_backend(self) -> Backend | None:
        """A backend like ``backend`` whose store was never created. Default: None (skip).

        Point it at a directory, database file, schema, table or key prefix
        that does not exist, and never call ``create_collection`` on it.
        """
        return None

    def test_reads_create_nothing_in_a_store_that_holds_sessions(
            self, backend: Backend, make_session_id: MakeSessionId,
            store_snapshot: StoreSnapshot) -> None:
        written, never = make_session_id("written"), make_session_id("never-written")
        backend.append(written, numbered_records(2))
        before = store_snapshot()
        for name, read in _reads(backend, [never, written]):
            read()
            assert store_snapshot() == before, f"{name} created something in the store"
        if isinstance(backend, ListsSessions):
            listed = list_session_ids(backend)
            assert never not in listed, "a read of a session that was never written made it"
        assert backend.fetch(written) == numbered_records(2)

    def test_reads_of_a_store_that_does_not_exist_create_nothing(
            self, uncreated_backend: Backend | None, make_session_id: MakeSessionId,
            store_snapshot: StoreSnapshot) -> None:
        if uncreated_backend is None:
            pytest.skip("no `uncreated_backend` fixture: override it with a backend whose "
                        "store was never created, to test that reading it creates nothing")
        before = store_snapshot()
        try:
            for name, read in _reads(uncreated_backend, [make_session_id("s")]):
                try:
                    result = read()
                except CollectionMissingError:
                    pass
                else:
                    assert _is_empty(result), f"{name} of a store that does not exist: {result}"
                assert store_snapshot() == before, (
                    f"{name} of a store that does not exist created something")
        finally:
            uncreated_backend.close()
        assert store_snapshot() == before
