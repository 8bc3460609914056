"""The contract of the optional capabilities, tested only where a backend declares them.

:class:`~chathistory.testing.BackendContract` includes these tests; each one
skips, saying why, when the backend does not declare its capability.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, message_to_dict

from chathistory.backend import Backend
from chathistory.capabilities import (
    CopiesInBulk,
    CopiesRecordText,
    FetchesInBulk,
    ListsSessions,
    PrunesSessions,
    TracksWriteTimes,
)
from chathistory.errors import RecordError
from chathistory.testing.blocking import run_without_blocking
from chathistory.testing.catalog_contract import CatalogContract
from chathistory.testing.samples import numbered_records, sample_messages

MakeSessionId = Callable[[str], str]


def sample_records() -> list[dict[str, Any]]:
    return [message_to_dict(message) for message in sample_messages()]

__all__ = ["CapabilityContract"]

# How far a store's clock may be from this process's: they run side by side.
CLOCK_SLACK = timedelta(seconds=2)


def _require(backend: Backend, capability: type, what: str) -> Any:
    if not isinstance(backend, capability):
        pytest.skip(f"{type(backend).__name__} does not declare {capability.__name__} ({what})")
    return backend


def _wait_until_after(moment: datetime, margin: timedelta = timedelta(milliseconds=20)) -> None:
    """Wait until this process's clock is past ``moment`` (no fixed sleep: poll the clock)."""
    while datetime.now(UTC) <= moment + margin:
        time.sleep(0.005)


def _all_pages(backend: ListsSessions, limit: int, sessions: int) -> list[list[str]]:
    """Every page, following ``after``; a listing that does not move on fails, not hangs."""
    pages: list[list[str]] = []
    after: str | None = None
    for _ in range(sessions + 2):
        page = backend.list_sessions(after=after, limit=limit)
        if not page:
            return pages
        assert after is None or page[0].session_id > after, "a page did not move past `after`"
        pages.append([info.session_id for info in page])
        after = page[-1].session_id
    raise AssertionError(f"paging {sessions} sessions by {limit} did not end")


def _awkward_records(holds_nul: bool) -> list[dict[str, Any]]:
    """Records whose JSON text a store may print differently: big numbers, NUL."""
    numbers = {"type": "ai", "data": {"content": "numbers", "type": "ai",
                                      "additional_kwargs": {"big": 2 ** 70, "huge": 1e300,
                                                            "tiny": 5e-324, "negative": -0.0}}}
    if not holds_nul:
        return [numbers]
    return [numbers, message_to_dict(HumanMessage("before\x00after",
                                                  additional_kwargs={"k": ["\x00"]}))]


class CapabilityContract(CatalogContract):
    """The capability tests; mixed into BackendContract, which provides the fixtures."""

    # -- ListsSessions ---------------------------------------------------------------------

    def test_list_sessions_pages_through_every_session_once_in_id_order(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        lister = _require(backend, ListsSessions, "listing sessions")
        ids = [make_session_id(f"list-{number}") for number in range(7)]
        for count, session_id in enumerate(ids, start=1):
            backend.append(session_id, numbered_records(count))
        backend.clear(ids[3])
        expected = sorted(ids[:3] + ids[4:])
        for limit in (1, 2, 3, 100):
            pages = _all_pages(lister, limit, len(expected))
            assert [session for page in pages for session in page] == expected, limit
            assert all(len(page) <= limit for page in pages)
        counts = {info.session_id: info.messages for info in lister.list_sessions(limit=100)}
        for count, session_id in enumerate(ids, start=1):
            if session_id in counts and counts[session_id] is not None:
                assert counts[session_id] == count

    def test_list_sessions_of_an_empty_store_is_empty(self, backend: Backend) -> None:
        lister = _require(backend, ListsSessions, "listing sessions")
        assert lister.list_sessions() == []
        assert run_without_blocking(lister.alist_sessions()) == []

    def test_alist_sessions_agrees_with_list_sessions(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        lister = _require(backend, ListsSessions, "listing sessions")
        for number in range(4):
            backend.append(make_session_id(f"alist-{number}"), numbered_records(2))
        first = lister.list_sessions(limit=2)
        assert run_without_blocking(lister.alist_sessions(limit=2)) == first
        rest = lister.list_sessions(after=first[-1].session_id, limit=10)
        assert run_without_blocking(
            lister.alist_sessions(after=first[-1].session_id, limit=10)) == rest
        assert len(first) + len(rest) == 4

    # -- TracksWriteTimes ------------------------------------------------------------------

    def test_last_write_is_when_records_were_last_appended(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        tracker = _require(backend, TracksWriteTimes, "write times")
        session_id, other = make_session_id("times"), make_session_id("times-other")
        assert tracker.last_write(session_id) is None
        before = datetime.now(UTC)
        backend.append(session_id, numbered_records(1))
        first = tracker.last_write(session_id)
        assert first is not None and first.tzinfo is not None
        assert before - CLOCK_SLACK <= first <= datetime.now(UTC) + CLOCK_SLACK
        backend.append(other, numbered_records(1))
        assert tracker.last_write(session_id) == first
        _wait_until_after(first)
        backend.append(session_id, numbered_records(1))
        second = tracker.last_write(session_id)
        assert second is not None and second > first
        assert run_without_blocking(tracker.alast_write(session_id)) == second
        backend.clear(session_id)
        assert tracker.last_write(session_id) is None
        assert run_without_blocking(tracker.alast_write(session_id)) is None

    def test_listed_sessions_carry_their_write_times(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        lister = _require(backend, ListsSessions, "listing sessions")
        tracker = _require(backend, TracksWriteTimes, "write times")
        session_id = make_session_id("listed-time")
        backend.append(session_id, numbered_records(1))
        (info,) = [info for info in lister.list_sessions() if info.session_id == session_id]
        assert info.last_write == tracker.last_write(session_id)

    # -- PrunesSessions --------------------------------------------------------------------

    def _old_and_new(self, backend: Backend, make_session_id: MakeSessionId
                     ) -> tuple[list[str], datetime, list[str]]:
        old = [make_session_id(f"old-{number}") for number in range(3)]
        new = [make_session_id(f"new-{number}") for number in range(2)]
        for session_id in old:
            backend.append(session_id, numbered_records(2))
        _wait_until_after(datetime.now(UTC))
        cutoff = datetime.now(UTC)
        _wait_until_after(cutoff)
        for session_id in new:
            backend.append(session_id, numbered_records(1))
        # One old session written again after the cutoff is no longer old.
        backend.append(old[0], numbered_records(1))
        return old[1:], cutoff, [*new, old[0]]

    def test_delete_sessions_before_deletes_only_sessions_not_written_since(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        pruner = _require(backend, PrunesSessions, "deleting sessions by write time")
        old, cutoff, kept = self._old_and_new(backend, make_session_id)
        assert pruner.delete_sessions_before(cutoff) == len(old)
        for session_id in old:
            assert backend.fetch(session_id) == []
        for session_id in kept:
            assert backend.fetch(session_id) != []
        assert pruner.delete_sessions_before(cutoff) == 0
        backend.append(old[0], numbered_records(1))
        assert len(backend.fetch(old[0])) == 1  # a pruned session can start afresh

    def test_a_dry_run_counts_and_deletes_nothing(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        pruner = _require(backend, PrunesSessions, "deleting sessions by write time")
        old, cutoff, kept = self._old_and_new(backend, make_session_id)
        assert pruner.delete_sessions_before(cutoff, dry_run=True) == len(old)
        assert run_without_blocking(
            pruner.adelete_sessions_before(cutoff, dry_run=True)) == len(old)
        for session_id in [*old, *kept]:
            assert backend.fetch(session_id) != []

    def test_adelete_sessions_before_deletes_the_same(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        pruner = _require(backend, PrunesSessions, "deleting sessions by write time")
        old, cutoff, kept = self._old_and_new(backend, make_session_id)
        assert run_without_blocking(pruner.adelete_sessions_before(cutoff)) == len(old)
        assert all(backend.fetch(session_id) == [] for session_id in old)
        assert all(backend.fetch(session_id) != [] for session_id in kept)

    def test_delete_sessions_before_refuses_a_naive_cutoff_deleting_nothing(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        pruner = _require(backend, PrunesSessions, "deleting sessions by write time")
        session_id = make_session_id("pruned-by-a-naive-cutoff")
        backend.append(session_id, numbered_records(2))
        # A naive time names no zone: read as UTC, or as local time, it prunes hours
        # more or less than meant. A day ahead, it would delete this session.
        naive = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
        with pytest.raises(ValueError, match="timezone-aware"):
            pruner.delete_sessions_before(naive)
        with pytest.raises(ValueError, match="timezone-aware"):
            run_without_blocking(pruner.adelete_sessions_before(naive))
        assert len(backend.fetch(session_id)) == 2

    # -- FetchesInBulk, CopiesInBulk --------------------------------------------------------

    def test_fetch_many_reads_each_session_whole_and_in_order(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        bulk = _require(backend, FetchesInBulk, "bulk reads")
        a, b, empty = (make_session_id(name) for name in ("bulk-a", "bulk-b", "bulk-empty"))
        backend.append(a, numbered_records(3, prefix="a"))
        backend.append(b, sample_records())
        backend.append(a, numbered_records(2, prefix="a-late"))
        expected = {a: backend.fetch(a), b: sample_records()}
        assert bulk.fetch_many([a, empty, b]) == expected
        assert run_without_blocking(bulk.afetch_many([b, a, empty])) == expected
        assert bulk.fetch_many([]) == {}

    def test_append_many_appends_after_existing_records(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        bulk = _require(backend, CopiesInBulk, "bulk writes")
        a, b, c = (make_session_id(name) for name in ("many-a", "many-b", "many-c"))
        backend.append(a, numbered_records(1, prefix="old"))
        bulk.append_many({a: numbered_records(2), b: sample_records(), c: []})
        run_without_blocking(bulk.aappend_many({b: numbered_records(1, prefix="z")}))
        assert backend.fetch(a) == numbered_records(1, prefix="old") + numbered_records(2)
        assert backend.fetch(b) == sample_records() + numbered_records(1, prefix="z")
        assert backend.fetch(c) == []

    def test_append_many_is_all_or_nothing(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        bulk = _require(backend, CopiesInBulk, "bulk writes")
        a, b = make_session_id("whole-a"), make_session_id("whole-b")
        bad = {"type": "human", "data": {"content": "bad", "when": object()}}
        with pytest.raises(RecordError):
            bulk.append_many({a: numbered_records(2), b: [numbered_records(1)[0], bad]})
        assert backend.fetch(a) == [] and backend.fetch(b) == []

    # -- CopiesRecordText -------------------------------------------------------------------

    def test_fetch_many_text_is_fetch_many_undecoded(
            self, backend: Backend, make_session_id: MakeSessionId, holds_nul: bool) -> None:
        text = _require(backend, CopiesRecordText, "records as JSON text")
        a, b, empty = (make_session_id(name) for name in ("text-a", "text-b", "text-empty"))
        backend.append(a, numbered_records(3, prefix="a"))
        backend.append(b, sample_records() + _awkward_records(holds_nul))
        fetched = text.fetch_many_text([a, empty, b])
        assert all(isinstance(item, str) for texts in fetched.values() for item in texts)
        decoded = {session: [json.loads(item) for item in texts]
                   for session, texts in fetched.items()}
        assert decoded == {a: backend.fetch(a), b: backend.fetch(b)}
        assert run_without_blocking(text.afetch_many_text([b, a, empty])) == fetched
        assert text.fetch_many_text([]) == {}

    def test_append_many_text_appends_what_another_store_fetched(
            self, backend: Backend, make_session_id: MakeSessionId, holds_nul: bool) -> None:
        text = _require(backend, CopiesRecordText, "records as JSON text")
        a, b, c = (make_session_id(name) for name in ("text-many-a", "text-many-b",
                                                       "text-many-c"))
        backend.append(a, numbered_records(1, prefix="old"))
        # Texts as other stores give them back: spaces, keys in another order, escapes.
        spaced = [json.dumps(record, sort_keys=True) for record in numbered_records(2)]
        awkward = sample_records() + _awkward_records(holds_nul)
        escaped = [json.dumps(record, ensure_ascii=True) for record in awkward]
        text.append_many_text({a: spaced, b: escaped, c: []})
        run_without_blocking(text.aappend_many_text(
            {b: [json.dumps(numbered_records(1, prefix="z")[0])]}))
        assert backend.fetch(a) == numbered_records(1, prefix="old") + numbered_records(2)
        assert backend.fetch(b) == awkward + numbered_records(1, prefix="z")
        assert backend.fetch(c) == []

    @pytest.mark.parametrize("bad", ["[1, 2]", "", b'{"type": "human"}', None,
                                     '{"type": "human", "data": {"content": "\udcff"}}'])
    def test_append_many_text_refuses_what_is_no_object_and_writes_nothing(
            self, backend: Backend, make_session_id: MakeSessionId, bad: Any) -> None:
        text = _require(backend, CopiesRecordText, "records as JSON text")
        a, b = make_session_id("text-whole-a"), make_session_id("text-whole-b")
        good = [json.dumps(record) for record in numbered_records(2)]
        with pytest.raises(RecordError):
            text.append_many_text({a: good, b: [good[0], bad]})
        with pytest.raises(RecordError):
            run_without_blocking(text.aappend_many_text({a: good, b: [bad]}))
        assert backend.fetch(a) == [] and backend.fetch(b) == []
