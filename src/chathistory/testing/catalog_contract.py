"""The contract of the session catalog (:class:`~chathistory.catalog.KeepsCatalog`).

Mixed into :class:`~chathistory.testing.BackendContract` through the
capability contract; each test skips, saying why, on a backend that does not
declare the capability. Every test name holds ``catalog``. The tests that
only append, clear and read also run on a backend that declares the read side
alone (:class:`~chathistory.catalog.ListsSummaries`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chathistory.backend import Backend
from chathistory.capabilities import PrunesSessions
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    KeepsCatalog,
    ListsSummaries,
    SessionSummary,
    erase,
    write_cursor,
)
from chathistory.testing.blocking import run_without_blocking
from chathistory.testing.samples import numbered_records

__all__ = ["CatalogContract"]

MakeSessionId = Callable[[str], str]

# How far a store's clock may be from this process's: they run side by side.
CLOCK_SLACK = timedelta(seconds=2)
# How exactly a store keeps a time it is given (SQLite's REAL seconds, Redis's milliseconds).
TIME_PRECISION = timedelta(milliseconds=1)


def _catalog(backend: Backend) -> Any:
    if not isinstance(backend, KeepsCatalog):
        pytest.skip(f"{type(backend).__name__} does not declare KeepsCatalog "
                    "(owners, titles, metadata, listings, erasure)")
    return backend


def _summaries(backend: Backend) -> Any:
    """The read side alone: these tests also run on a backend that only lists."""
    if not isinstance(backend, ListsSummaries):
        pytest.skip(f"{type(backend).__name__} does not declare ListsSummaries "
                    "(the catalog's listing)")
    return backend


def _wait_past(moment: datetime) -> None:
    while datetime.now(UTC) <= moment + timedelta(milliseconds=20):
        time.sleep(0.005)


def _summary(catalog: Any, session_id: str) -> SessionSummary | None:
    found: dict[str, SessionSummary] = catalog.session_summaries([session_id])
    return found.get(session_id)


def _everything(catalog: Any, *, limit: int, **listing: Any) -> list[str]:
    """Every id, page after page; a cursor that never ends fails, not hangs."""
    ids: list[str] = []
    cursor = None
    for _ in range(200):
        page = catalog.list_summaries(limit=limit, cursor=cursor, **listing)
        assert len(page.summaries) <= limit
        ids += [summary.session_id for summary in page.summaries]
        if page.cursor is None:
            return ids
        cursor = page.cursor
    raise AssertionError("the listing's cursor never ended")


def _at(days_ago: float, base: datetime | None = None) -> datetime:
    return (base or datetime.now(UTC)) - timedelta(days=days_ago)


def _restored(session_id: str, updated_days_ago: float, *, owner: str | None = None,
              base: datetime | None = None, title: str | None = None,
              metadata: dict[str, Any] | None = None) -> SessionSummary:
    updated = _at(updated_days_ago, base)
    return SessionSummary(session_id, owner, title, metadata or {},
                          created_at=updated - timedelta(days=1), updated_at=updated,
                          messages=0)


def _close(first: datetime, second: datetime) -> bool:
    return abs(first - second) <= TIME_PRECISION


class CatalogContract:
    """The catalog's tests; mixed into BackendContract, which provides the fixtures."""

    # -- times and counts kept with the writes ----------------------------------------------

    def test_catalog_counts_and_times_follow_append_and_clear(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _summaries(backend)
        session_id, other = make_session_id("kept"), make_session_id("kept-other")
        assert _summary(catalog, session_id) is None
        before = datetime.now(UTC)
        backend.append(session_id, numbered_records(2))
        first = _summary(catalog, session_id)
        assert first is not None and first.messages == 2
        assert first.created_at.tzinfo is not None and first.updated_at.tzinfo is not None
        assert before - CLOCK_SLACK <= first.updated_at <= datetime.now(UTC) + CLOCK_SLACK
        # One append sets both; a store whose triggers run per row stamps each row
        # with its own clock reading, a few milliseconds apart on a busy machine.
        assert abs(first.created_at - first.updated_at) <= CLOCK_SLACK
        assert (first.owner, first.title, first.metadata) == (None, None, {})
        _wait_past(first.updated_at)
        backend.append(other, numbered_records(1))
        backend.append(session_id, numbered_records(3))
        second = _summary(catalog, session_id)
        assert second is not None and second.messages == 5
        assert second.updated_at > first.updated_at
        assert second.created_at == first.created_at
        assert run_without_blocking(catalog.asession_summaries([session_id])) == {
            session_id: second}
        backend.clear(session_id)
        assert _summary(catalog, session_id) is None
        assert catalog.session_summaries([session_id, other]).keys() == {other}

    def test_catalog_describes_a_session_before_its_first_message(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        session_id = make_session_id("described-first")
        described = catalog.update_session(session_id, owner="ada", title="Plans")
        assert (described.owner, described.title, described.messages) == ("ada", "Plans", 0)
        _wait_past(described.updated_at)
        backend.append(session_id, numbered_records(2))
        summary = _summary(catalog, session_id)
        assert summary is not None and summary.messages == 2
        assert (summary.owner, summary.title) == ("ada", "Plans")
        assert summary.created_at == described.created_at
        assert summary.updated_at > described.updated_at
        backend.clear(session_id)
        assert _summary(catalog, session_id) is None
        catalog.update_session(session_id, title="alone")
        backend.clear(session_id)  # a summary without messages is cleared too
        assert _summary(catalog, session_id) is None

    # -- writes: owner, title, metadata -----------------------------------------------------

    def test_catalog_metadata_merges_or_replaces_and_times_stay(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        session_id = make_session_id("metadata")
        backend.append(session_id, numbered_records(1))
        before = _summary(catalog, session_id)
        assert before is not None
        catalog.update_session(session_id, metadata={"plan": "pro", "n": 1})
        merged = catalog.update_session(session_id, metadata={"n": 2, "tags": ["a", "é"]})
        assert merged.metadata == {"plan": "pro", "n": 2, "tags": ["a", "é"]}
        replaced = catalog.update_session(session_id, metadata={"only": True},
                                          replace_metadata=True)
        assert replaced.metadata == {"only": True}
        assert _summary(catalog, session_id) == replaced
        assert (replaced.created_at, replaced.updated_at, replaced.messages) == (
            before.created_at, before.updated_at, 1)
        again = run_without_blocking(catalog.aupdate_session(session_id, metadata={"x": None}))
        assert again.metadata == {"only": True, "x": None}

    def test_catalog_owner_and_title_set_clear_and_set_only_if_unset(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        session_id = make_session_id("owned")
        backend.append(session_id, numbered_records(1))
        first = catalog.update_session(session_id, owner="ada", title="First",
                                       only_if_unset=True)
        assert (first.owner, first.title) == ("ada", "First")
        kept = catalog.update_session(session_id, owner="bob", title="Second",
                                      only_if_unset=True)
        assert (kept.owner, kept.title) == ("ada", "First")
        retitled = catalog.update_session(session_id, title="Second")
        assert (retitled.owner, retitled.title) == ("ada", "Second")
        untouched = catalog.update_session(session_id, owner=UNCHANGED, metadata={"k": "v"})
        assert (untouched.owner, untouched.title) == ("ada", "Second")
        cleared = catalog.update_session(session_id, title=None)
        assert (cleared.owner, cleared.title) == ("ada", None)
        assert catalog.update_session(session_id, title="Third",
                                      only_if_unset=True).title == "Third"

    @pytest.mark.parametrize("bad", [
        {"title": "nul\x00"}, {"owner": ""}, {"owner": 42}, {"metadata": ["not", "a", "dict"]},
        {"metadata": {"when": object()}}, {"metadata": {"nan": float("nan")}},
        {"metadata": {"big": "x" * 20_000}}])
    def test_catalog_refuses_bad_values_and_changes_nothing(
            self, backend: Backend, make_session_id: MakeSessionId, bad: dict[str, Any]) -> None:
        catalog = _catalog(backend)
        session_id = make_session_id("refused")
        backend.append(session_id, numbered_records(1))
        catalog.update_session(session_id, owner="ada", title="kept", metadata={"k": 1})
        before = _summary(catalog, session_id)
        with pytest.raises(ValueError):
            catalog.update_session(session_id, **bad)
        assert _summary(catalog, session_id) == before

    # -- listing ------------------------------------------------------------------------------

    def test_catalog_lists_newest_or_oldest_first_by_update_time(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _summaries(backend)
        ids = [make_session_id(f"order-{number}") for number in range(4)]
        for session_id in ids:
            backend.append(session_id, numbered_records(1))
            _wait_past(datetime.now(UTC))
        backend.append(ids[0], numbered_records(1))  # the oldest is now the newest
        expected = [ids[0], ids[3], ids[2], ids[1]]
        assert _everything(catalog, limit=100) == expected
        assert _everything(catalog, limit=100, newest_first=False) == expected[::-1]
        page = catalog.list_summaries(limit=2)
        assert [summary.session_id for summary in page.summaries] == expected[:2]
        assert page.summaries[0].messages == 2
        assert run_without_blocking(catalog.alist_summaries(limit=2)) == page

    def test_catalog_ties_in_update_time_are_ordered_by_session_id(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        base = datetime.now(UTC)
        ids = sorted(make_session_id(f"tie-{letter}") for letter in "cabd")
        catalog.restore_summaries([_restored(session_id, 1, base=base) for session_id in ids])
        assert _everything(catalog, limit=3) == ids[::-1]
        assert _everything(catalog, limit=3, newest_first=False) == ids

    def test_catalog_lists_one_owner_or_all(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        ada = [make_session_id(f"ada-{number}") for number in range(3)]
        bob = [make_session_id(f"bob-{number}") for number in range(2)]
        nobody = make_session_id("nobody")
        for session_id in [*ada, *bob, nobody]:
            backend.append(session_id, numbered_records(1))
            catalog.update_session(session_id, owner=None if session_id == nobody else
                                   ("ada" if session_id in ada else "bob"))
        assert sorted(_everything(catalog, limit=2, owner="ada")) == sorted(ada)
        assert sorted(_everything(catalog, limit=100, owner="bob")) == sorted(bob)
        assert sorted(_everything(catalog, limit=4)) == sorted([*ada, *bob, nobody])
        assert catalog.list_summaries(owner="carol").summaries == []
        page = catalog.list_summaries(owner="ada", limit=100)
        assert {summary.owner for summary in page.summaries} == {"ada"}

    def test_catalog_filters_by_metadata_key_and_value(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        values: dict[str, dict[str, Any]] = {
            "text": {"n": "1", "plan": "pro"}, "number": {"n": 1, "plan": "pro"},
            "true": {"n": True}, "none": {"n": None}, "missing": {"plan": "free"}}
        ids = {name: make_session_id(f"meta-{name}") for name in values}
        for name, metadata in values.items():
            backend.append(ids[name], numbered_records(1))
            catalog.update_session(ids[name], owner="ada", metadata=metadata)

        def listed(**where: Any) -> set[str]:
            return set(_everything(catalog, limit=2, where=where))

        assert listed(n="1") == {ids["text"]}
        assert listed(n=1) == {ids["number"]}
        assert listed(n=True) == {ids["true"]}
        assert listed(n=None) == {ids["none"]}
        assert listed(plan="pro") == {ids["text"], ids["number"]}
        assert listed(plan="pro", n=1) == {ids["number"]}
        assert set(_everything(catalog, limit=10, owner="ada", where={"plan": "free"})) == {
            ids["missing"]}
        with pytest.raises(ValueError):
            catalog.list_summaries(where={"n": 1.5})

    def test_catalog_cursor_pages_have_no_duplicates_and_no_gaps(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        base = datetime.now(UTC)
        ids = [make_session_id(f"page-{number:02}") for number in range(11)]
        # Distinct times, and runs of equal ones, which a cursor must get past too.
        catalog.restore_summaries([
            _restored(session_id, 10 - number // 3, base=base, owner="ada")
            for number, session_id in enumerate(ids)])
        catalog.restore_summaries([_restored(make_session_id("page-bob"), 5, base=base,
                                             owner="bob")])
        newest = sorted(ids, key=lambda session_id: (10 - ids.index(session_id) // 3,
                                                     [-ord(c) for c in session_id]))
        for newest_first in (True, False):
            expected = newest if newest_first else newest[::-1]
            for limit in (1, 2, 3, 4, 11, 12):
                assert _everything(catalog, limit=limit, owner="ada",
                                   newest_first=newest_first) == expected, (limit, newest_first)
        last = catalog.list_summaries(owner="ada", limit=11)
        assert last.cursor is None

    def test_catalog_cursor_survives_writes_to_other_sessions(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        base = datetime.now(UTC)
        ids = [make_session_id(f"live-{number}") for number in range(6)]
        catalog.restore_summaries([_restored(session_id, 6 - number, base=base, owner="ada")
                                   for number, session_id in enumerate(ids)])
        first = catalog.list_summaries(owner="ada", limit=3)
        newcomer = make_session_id("live-new")
        backend.append(newcomer, numbered_records(1))
        catalog.update_session(newcomer, owner="ada")
        rest = catalog.list_summaries(owner="ada", limit=10, cursor=first.cursor)
        seen = [summary.session_id for summary in [*first.summaries, *rest.summaries]]
        assert seen == ids[::-1]

    def test_catalog_refuses_a_bad_limit_or_cursor(self, backend: Backend) -> None:
        catalog = _summaries(backend)
        for limit in (0, -1, True):
            with pytest.raises(ValueError):
                catalog.list_summaries(limit=limit)
        with pytest.raises(ValueError):
            catalog.list_summaries(cursor="not a cursor")
        # Cursors as write_cursor makes them, of positions no listing writes: one edited by
        # hand, or another backend's, is refused as a ValueError, not failing on a value.
        positions: list[list[Any]] = [[[], {}], ["x"], [None, None], [True, "x", "y"],
                                      [1, 2, 3, 4]]
        for position in positions:
            with pytest.raises(ValueError):
                catalog.list_summaries(cursor=write_cursor(position, True))
        with pytest.raises(ValueError):
            run_without_blocking(catalog.alist_summaries(cursor=write_cursor([[], {}], True)))
        assert catalog.list_summaries().summaries == []

    # -- erasure ------------------------------------------------------------------------------

    def _owners(self, backend: Backend, catalog: Any, make_session_id: MakeSessionId
                ) -> tuple[list[str], list[str]]:
        ada = [make_session_id(f"erase-ada-{number}") for number in range(3)]
        bob = [make_session_id(f"erase-bob-{number}") for number in range(2)]
        for count, session_id in enumerate(ada[:2], start=2):
            backend.append(session_id, numbered_records(count))
        catalog.update_session(ada[2], title="no messages yet")
        for session_id in [*ada, *bob]:
            if session_id in bob:
                backend.append(session_id, numbered_records(1))
            catalog.update_session(session_id, owner="ada" if session_id in ada else "bob")
        return ada, bob

    def test_catalog_erase_of_an_owner_deletes_all_theirs_and_nothing_else(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        ada, bob = self._owners(backend, catalog, make_session_id)
        bob_before = catalog.session_summaries(bob)
        receipt = erase(backend, owner="ada", chunk=2)
        assert (receipt.sessions, receipt.messages) == (3, 5)
        assert all(backend.fetch(session_id) == [] for session_id in ada)
        assert catalog.session_summaries(ada) == {}
        assert catalog.list_summaries(owner="ada").summaries == []
        assert catalog.session_summaries(bob) == bob_before
        assert all(len(backend.fetch(session_id)) == 1 for session_id in bob)
        again = erase(backend, owner="ada")
        assert (again.sessions, again.messages) == (0, 0)

    def test_catalog_erase_sessions_by_id_with_a_dry_run_first(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        ada, bob = self._owners(backend, catalog, make_session_id)
        chosen = [ada[0], ada[2], bob[0], make_session_id("erase-never-written")]
        dry = catalog.erase_sessions(chosen, dry_run=True)
        assert (dry.sessions, dry.messages, dry.dry_run) == (3, 3, True)
        assert len(catalog.session_summaries([*ada, *bob])) == 5
        assert erase(backend, owner="ada", dry_run=True, chunk=1) == ErasureReceipt(
            3, 5, dry_run=True)
        done = run_without_blocking(catalog.aerase_sessions(chosen))
        assert (done.sessions, done.messages, done.dry_run) == (3, 3, False)
        assert catalog.session_summaries([*ada, *bob]).keys() == {ada[1], bob[1]}
        assert backend.fetch(bob[0]) == [] and len(backend.fetch(bob[1])) == 1
        assert catalog.erase_sessions(chosen) == ErasureReceipt(0, 0)

    def test_catalog_erase_sessions_refuses_one_str_erasing_nothing(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        session_id = make_session_id("erased-as-one-str")
        backend.append(session_id, numbered_records(1))
        # A str is a sequence too: taken as one, it names each of its characters.
        with pytest.raises(TypeError, match="not one str"):
            catalog.erase_sessions(session_id)
        with pytest.raises(TypeError, match="not one str"):
            run_without_blocking(catalog.aerase_sessions(session_id))
        assert len(backend.fetch(session_id)) == 1

    def test_catalog_erase_killed_partway_finishes_when_run_again(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        ids = [make_session_id(f"killed-{number}") for number in range(5)]
        for session_id in ids:
            backend.append(session_id, numbered_records(2))
            catalog.update_session(session_id, owner="ada")
        bob = make_session_id("killed-bob")
        backend.append(bob, numbered_records(1))
        catalog.update_session(bob, owner="bob")

        class Killed(Exception):
            pass

        def kill(done: ErasureReceipt) -> None:
            raise Killed

        with pytest.raises(Killed):
            erase(backend, owner="ada", chunk=2, progress=kill)
        left = catalog.list_summaries(owner="ada", limit=100).summaries
        assert len(left) == 3  # whole chunks only: two sessions went, with their entries
        assert all(summary.messages == 2 for summary in left)
        rest = erase(backend, owner="ada", chunk=2)
        assert (rest.sessions, rest.messages) == (3, 6)
        assert catalog.list_summaries(owner="ada").summaries == []
        assert len(backend.fetch(bob)) == 1

    # -- retention, restoring ---------------------------------------------------------------

    def test_catalog_restore_keeps_both_times_and_the_count(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        moved, fresh = make_session_id("restored"), make_session_id("restored-fresh")
        backend.append(moved, numbered_records(3))
        backend.append(fresh, numbered_records(1))
        old = _restored(moved, 30, owner="ada", title="Old", metadata={"from": "rockset"})
        run_without_blocking(catalog.arestore_summaries([old]))
        summary = _summary(catalog, moved)
        assert summary is not None and summary.messages == 3
        assert (summary.owner, summary.title, summary.metadata) == ("ada", "Old",
                                                                    {"from": "rockset"})
        assert _close(summary.created_at, old.created_at)
        assert _close(summary.updated_at, old.updated_at)
        assert _everything(catalog, limit=10, newest_first=False)[0] == moved
        with pytest.raises(ValueError):
            catalog.restore_summaries([SessionSummary(
                fresh, None, None, {}, datetime.now(), datetime.now(), 0)])  # naive times
        assert _summary(catalog, fresh) is not None

    def test_catalog_prune_by_owner_deletes_only_that_owners_old_sessions(
            self, backend: Backend, make_session_id: MakeSessionId) -> None:
        catalog = _catalog(backend)
        if not isinstance(backend, PrunesSessions):
            pytest.skip(f"{type(backend).__name__} does not declare PrunesSessions")
        pruner: Any = backend  # a catalog's prune also takes owner=
        ada_old, ada_new = make_session_id("prune-ada-old"), make_session_id("prune-ada-new")
        bob_old = make_session_id("prune-bob-old")
        for session_id in (ada_old, ada_new, bob_old):
            backend.append(session_id, numbered_records(1))
        catalog.restore_summaries([_restored(ada_old, 40, owner="ada"),
                                   _restored(bob_old, 40, owner="bob")])
        catalog.update_session(ada_new, owner="ada")
        cutoff = _at(30)
        assert pruner.delete_sessions_before(cutoff, dry_run=True, owner="ada") == 1
        assert pruner.delete_sessions_before(cutoff, owner="ada") == 1
        assert backend.fetch(ada_old) == [] and _summary(catalog, ada_old) is None
        assert backend.fetch(ada_new) != [] and backend.fetch(bob_old) != []
        assert run_without_blocking(pruner.adelete_sessions_before(cutoff)) == 1
        assert backend.fetch(bob_old) == [] and _summary(catalog, bob_old) is None
