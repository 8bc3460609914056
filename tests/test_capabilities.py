"""Optional capabilities: detected, tested where declared, and broken ones caught."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chathistory.backends.memory import MemoryBackend
from chathistory.capabilities import capabilities_of, check_page_limit
from chathistory.testing.samples import numbered_records

pytest_plugins = ["pytester"]


def test_capabilities_are_detected_from_what_a_backend_implements() -> None:
    assert capabilities_of(MemoryBackend()) == {"list_sessions", "last_write",
                                                "delete_sessions_before", "fetch_many",
                                                "append_many", "record_text", "catalog",
                                                "summaries"}
    assert capabilities_of(object()) == frozenset()


def test_a_read_only_catalog_declares_summaries_and_not_the_catalog() -> None:
    class ReadsSummaries:
        def list_summaries(self, **listing: Any) -> Any: ...
        def session_summaries(self, session_ids: Any) -> Any: ...
        async def alist_summaries(self, **listing: Any) -> Any: ...
        async def asession_summaries(self, session_ids: Any) -> Any: ...

    assert capabilities_of(ReadsSummaries()) == {"summaries"}


def test_a_capability_needs_its_async_twin_too() -> None:
    class SyncOnly:
        def list_sessions(self, *, after: str | None = None, limit: int = 100) -> list[Any]:
            return []

    assert capabilities_of(SyncOnly()) == frozenset()


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "10"])
def test_a_page_limit_must_be_a_positive_int(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit must be an int >= 1"):
        check_page_limit(limit)
    with pytest.raises(ValueError, match="limit must be an int >= 1"):
        MemoryBackend().list_sessions(limit=limit)


def test_the_memory_fake_reports_counts_and_write_times() -> None:
    backend = MemoryBackend()
    before = datetime.now(UTC)
    backend.append("b", numbered_records(2))
    backend.append("a", numbered_records(3))
    (a, b) = backend.list_sessions()
    assert (a.session_id, a.messages, b.session_id, b.messages) == ("a", 3, "b", 2)
    assert a.last_write is not None and a.last_write >= before


CAPABILITY_TESTS = "sessions or write or dry_run or many or catalog"

BROKEN = {
    "pages_skip_one": """
        def list_sessions(self, *, after=None, limit=100):
            return super().list_sessions(after=after, limit=limit)[1:]
    """,
    "pages_ignore_after": """
        def list_sessions(self, *, after=None, limit=100):
            return super().list_sessions(limit=limit)
    """,
    "lists_cleared_sessions": """
        def clear(self, session_id):
            self._sessions[session_id] = []
    """,
    "wrong_counts": """
        def list_sessions(self, *, after=None, limit=100):
            import dataclasses
            return [dataclasses.replace(info, messages=1)
                    for info in super().list_sessions(after=after, limit=limit)]
    """,
    "write_time_never_moves": """
        def last_write(self, session_id):
            found = super().last_write(session_id)
            self.first = getattr(self, "first", None) or found
            return self.first if found else None
    """,
    "prunes_everything": """
        def delete_sessions_before(self, cutoff, *, dry_run=False):
            import datetime
            return super().delete_sessions_before(
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1),
                dry_run=dry_run)
    """,
    "dry_run_deletes": """
        def delete_sessions_before(self, cutoff, *, dry_run=False):
            return super().delete_sessions_before(cutoff)
    """,
    "fetch_many_reorders": """
        def fetch_many(self, session_ids):
            return {s: list(reversed(r)) for s, r in super().fetch_many(session_ids).items()}
    """,
    "append_many_half_writes": """
        def append_many(self, batches):
            for session, records in batches.items():
                super().append_many({session: records})
    """,
    "fetch_many_text_drops_the_last": """
        def fetch_many_text(self, session_ids):
            return {s: texts[:-1] for s, texts in super().fetch_many_text(session_ids).items()}
    """,
    "append_many_text_half_writes": """
        def append_many_text(self, batches):
            for session, texts in batches.items():
                super().append_many_text({session: texts})
    """,
    "append_many_text_stores_no_object": """
        def append_many_text(self, batches):
            self._store_texts("append_many_text", {s: list(t) for s, t in batches.items()})
    """,
    "async_prune_differs": """
        async def adelete_sessions_before(self, cutoff, *, dry_run=False):
            return 0
    """,
    # -- the catalog --
    "listing_ignores_the_owner": """
        def list_summaries(self, *, owner=None, **listing):
            return super().list_summaries(**listing)
    """,
    "listing_ignores_the_order": """
        def list_summaries(self, *, newest_first=True, **listing):
            return super().list_summaries(**listing)
    """,
    "listing_ignores_where": """
        def list_summaries(self, *, where=None, **listing):
            return super().list_summaries(**listing)
    """,
    "cursor_repeats_a_session": """
        def list_summaries(self, *, cursor=None, **listing):
            from chathistory.catalog import SummaryPage
            page = super().list_summaries(cursor=cursor, **listing)
            if cursor is not None and getattr(self, "last", None) is not None:
                page = SummaryPage([self.last, *page.summaries], page.cursor)
            self.last = page.summaries[-1] if page.summaries else None
            return page
    """,
    "cursor_skips_a_session": """
        def list_summaries(self, *, cursor=None, **listing):
            from chathistory.catalog import SummaryPage
            page = super().list_summaries(cursor=cursor, **listing)
            return SummaryPage(page.summaries[1:] if cursor else page.summaries, page.cursor)
    """,
    "erase_leaves_the_catalog_entry": """
        def erase_sessions(self, session_ids, *, dry_run=False):
            receipt = super().erase_sessions(session_ids, dry_run=True)
            receipt.dry_run = dry_run
            if not dry_run:
                for session in session_ids:
                    self._sessions.pop(session, None)
            return receipt
    """,
    "erase_reaches_the_neighbours": """
        def erase_sessions(self, session_ids, *, dry_run=False):
            return super().erase_sessions([*session_ids, *self._catalog][:len(session_ids) + 1],
                                          dry_run=dry_run)
    """,
    "receipt_counts_no_messages": """
        def erase_sessions(self, session_ids, *, dry_run=False):
            receipt = super().erase_sessions(session_ids, dry_run=dry_run)
            receipt.messages = 0
            return receipt
    """,
    "count_not_kept_with_append": """
        def _summary(self, session_id):
            import dataclasses
            summary = super()._summary(session_id)
            self.counts = getattr(self, "counts", {})
            return dataclasses.replace(
                summary, messages=self.counts.setdefault(session_id, summary.messages))
    """,
    "append_does_not_move_updated_at": """
        def _store(self, encoded):
            kept = {s: self._catalog[s].updated_at for s in encoded if s in self._catalog}
            super()._store(encoded)
            for session, moment in kept.items():
                self._catalog[session].updated_at = moment
    """,
    "clear_leaves_the_catalog_entry": """
        def clear(self, session_id):
            self._sessions.pop(session_id, None)
    """,
    "metadata_always_replaced": """
        def update_session(self, session_id, **changes):
            changes["replace_metadata"] = True
            return super().update_session(session_id, **changes)
    """,
    "only_if_unset_ignored": """
        def update_session(self, session_id, *, only_if_unset=False, **changes):
            return super().update_session(session_id, **changes)
    """,
    "restore_drops_the_times": """
        def restore_summaries(self, summaries):
            import dataclasses, datetime
            now = datetime.datetime.now(datetime.UTC)
            super().restore_summaries([dataclasses.replace(s, created_at=now, updated_at=now)
                                       for s in summaries])
    """,
    "prune_reads_a_naive_cutoff_as_utc": """
        def delete_sessions_before(self, cutoff, *, dry_run=False, owner=None):
            from datetime import UTC
            return super().delete_sessions_before(
                cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC), dry_run=dry_run,
                owner=owner)
    """,
    "erase_sessions_takes_a_str_for_its_characters": """
        def erase_sessions(self, session_ids, *, dry_run=False):
            return super().erase_sessions(list(session_ids), dry_run=dry_run)
    """,
    "prune_ignores_the_owner": """
        def delete_sessions_before(self, cutoff, *, dry_run=False, owner=None):
            return super().delete_sessions_before(cutoff, dry_run=dry_run)
    """,
}


@pytest.mark.parametrize("flaw", sorted(BROKEN))
def test_a_broken_capability_fails_the_contract(pytester: pytest.Pytester, flaw: str) -> None:
    body = "\n".join("    " + line[8:] for line in BROKEN[flaw].strip("\n").splitlines())
    pytester.makepyfile(f"""
import pytest
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract

class Broken(MemoryBackend):
{body}

class TestBroken(BackendContract):
    @pytest.fixture
    def backend(self):
        return Broken()
""")
    # A broken listing could loop: the subprocess is killed after its timeout.
    outcomes = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-k", CAPABILITY_TESTS, timeout=120).parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, outcomes


def test_a_backend_without_capabilities_skips_their_tests_saying_why(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
import pytest
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract

class FourMethodsOnly(MemoryBackend):
    list_sessions = last_write = delete_sessions_before = fetch_many = append_many = None
    fetch_many_text = append_many_text = list_summaries = session_summaries = None
    update_session = erase_sessions = restore_summaries = None

class TestPlain(BackendContract):
    @pytest.fixture
    def backend(self):
        return FourMethodsOnly()
""")
    result = pytester.runpytest_subprocess("-q", "-rs", "-p", "no:cacheprovider", timeout=120)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["skipped"] >= 11, outcomes
    for capability in ("CopiesInBulk", "CopiesRecordText", "FetchesInBulk", "KeepsCatalog",
                       "ListsSessions", "PrunesSessions", "TracksWriteTimes"):
        assert f"does not declare {capability}" in result.stdout.str()
