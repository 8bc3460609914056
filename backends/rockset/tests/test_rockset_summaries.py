"""The catalog's read side on Rockset: what is listed, what is not, and the way out.

The contract (test_rockset_backend.py) runs its read-only catalog tests here;
these pin what is Rockset's own: times taken from the documents, keyset pages
over ties, sessions only langchain_community wrote, one query per page, the
filters Rockset cannot answer, and broken listings that the tests catch.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chathistory_rockset.backend import RocksetBackend
from click.testing import CliRunner
from langchain_core.messages import HumanMessage
from rockset_emulator import RocksetEmulator

from chathistory import CapabilityMissingError, CollectionMissingError, get_backend
from chathistory.capabilities import PrunesSessions
from chathistory.catalog import (
    KeepsCatalog,
    ListsSummaries,
    SessionSummary,
    SummaryPage,
    erase,
    list_conversations,
)
from chathistory.cli import main
from chathistory.testing import numbered_records
from chathistory.testing.blocking import run_without_blocking
from chathistory.testing.catalog_contract import CatalogContract
from chathistory.transfer import copy_sessions

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RocksetChatMessageHistory

MakeBackend = Callable[..., RocksetBackend]
QUERY = ("POST", "/v1/orgs/self/queries")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_names = itertools.count()


def stamp(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def documents(emu: RocksetEmulator, backend: RocksetBackend, *added: dict[str, Any]) -> None:
    """Documents as another writer left them, through the SDK's Write API."""
    emu.client().Documents.add_documents(collection=backend.config.collection,
                                         workspace=backend.config.workspace, data=list(added))


def every_id(backend: RocksetBackend, *, limit: int, newest_first: bool = True) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = backend.list_summaries(limit=limit, newest_first=newest_first, cursor=cursor)
        assert len(page.summaries) <= limit
        ids += [summary.session_id for summary in page.summaries]
        if page.cursor is None:
            return ids
        cursor = page.cursor
    raise AssertionError("the cursor never ended")


def test_rockset_declares_the_read_side_only(make_backend: MakeBackend) -> None:
    backend = make_backend()
    assert isinstance(backend, ListsSummaries) and not isinstance(backend, KeepsCatalog)


def test_summaries_take_their_times_and_counts_from_the_documents(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    before = datetime.now(UTC)
    backend.append("s", numbered_records(2))
    backend.append("s", numbered_records(1, prefix="b"))
    document = emu.documents("commons", backend.config.collection)["s"]
    (summary,) = backend.list_summaries().summaries
    assert summary == SessionSummary(
        "s", None, None, {}, datetime.strptime(document["_event_time"], TIME_FORMAT)
        .replace(tzinfo=UTC), backend.last_write("s") or before, 3)
    assert before <= summary.created_at < summary.updated_at <= datetime.now(UTC)
    assert backend.session_summaries(["s", "nobody"]) == {"s": summary}


def test_keyset_pages_get_past_ties_without_duplicates_or_gaps(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    base = datetime(2024, 3, 1, tzinfo=UTC)
    # Eleven sessions, their write times in runs of three equal ones.
    written = {f"s{number:02}": base + timedelta(hours=number // 3) for number in range(11)}
    documents(emu, backend, *[{"_id": session_id, "messages": [{"n": 1}],
                               "last_write": stamp(moment), "_event_time": stamp(base)}
                              for session_id, moment in written.items()])
    documents(emu, backend, {"_id": "empty", "messages": [], "last_write": stamp(base)})
    newest = sorted(written, key=lambda session_id: (written[session_id], session_id),
                    reverse=True)
    for limit in (1, 2, 3, 4, 10, 11, 12):
        assert every_id(backend, limit=limit) == newest, limit
        assert every_id(backend, limit=limit, newest_first=False) == newest[::-1], limit
    assert backend.list_summaries(limit=11).cursor is None
    assert backend.list_summaries(limit=10).cursor is not None


def test_a_page_is_one_query_and_so_is_a_lookup(emu: RocksetEmulator,
                                                 make_backend: MakeBackend) -> None:
    backend = make_backend()
    for number in range(4):
        backend.append(f"s{number}", numbered_records(1))
    emu.reset_request_count()
    first = backend.list_summaries(limit=2)
    backend.list_summaries(limit=2, cursor=first.cursor)
    backend.session_summaries([f"s{number}" for number in range(4)])
    assert emu.requests == [QUERY] * 3


def test_a_cursor_keeps_its_place_while_other_sessions_are_written(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    for number in range(4):
        backend.append(f"s{number}", numbered_records(1))
    first = backend.list_summaries(limit=2)
    backend.append("new", numbered_records(1))
    rest = backend.list_summaries(limit=10, cursor=first.cursor)
    assert [summary.session_id for summary in [*first.summaries, *rest.summaries]] == [
        "s3", "s2", "s1", "s0"]
    assert run_without_blocking(backend.alist_summaries(limit=2, cursor=first.cursor)) == (
        SummaryPage(rest.summaries, rest.cursor))


def test_sessions_only_langchain_community_wrote_list_last_with_their_event_time(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    theirs = RocksetChatMessageHistory(session_id="theirs", client=emu.client(),
                                       collection=backend.config.collection)
    theirs.add_message(HumanMessage("one"))
    theirs.add_message(HumanMessage("two"))
    backend.append("ours", numbered_records(1))
    newest = backend.list_summaries().summaries
    assert [(summary.session_id, summary.messages) for summary in newest] == [
        ("ours", 1), ("theirs", 2)]
    theirs_summary = newest[1]
    assert theirs_summary.created_at == theirs_summary.updated_at  # no write time: ingested
    assert every_id(backend, limit=1, newest_first=False) == ["theirs", "ours"]


def test_a_cleared_session_leaves_the_listing(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("a", numbered_records(1))
    backend.append("b", numbered_records(1))
    backend.clear("a")
    assert [summary.session_id for summary in backend.list_summaries().summaries] == ["b"]
    assert backend.session_summaries(["a", "b"]).keys() == {"b"}
    backend.append("a", numbered_records(2))
    summary = backend.session_summaries(["a"])["a"]
    assert summary.messages == 2 and summary.created_at <= summary.updated_at


@pytest.mark.parametrize("listing", [{"owner": "ada"}, {"where": {"plan": "pro"}},
                                     {"owner": "ada", "where": {"plan": "pro"}}])
def test_filters_rockset_cannot_answer_say_so_and_the_way_out(
        emu: RocksetEmulator, make_backend: MakeBackend, listing: dict[str, Any]) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1))
    emu.reset_request_count()
    with pytest.raises(CapabilityMissingError) as refused:
        backend.list_summaries(**listing)
    message = str(refused.value)
    assert "owner" in message and "metadata" in message
    assert (f"chathistory copy -b rockset -o collection={backend.config.collection} ... "
            "--to sqlite") in message
    assert emu.requests == []  # refused before asking Rockset
    with pytest.raises(CapabilityMissingError):
        list_conversations(backend, **listing)
    with pytest.raises(CapabilityMissingError):
        run_without_blocking(backend.alist_summaries(**listing))


def test_without_filters_the_module_api_lists_and_erasure_is_refused(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1))
    assert [summary.session_id for summary in list_conversations(backend).summaries] == ["s"]
    with pytest.raises(CapabilityMissingError, match="KeepsCatalog"):
        erase(backend, session_ids=["s"])
    assert len(backend.fetch("s")) == 1


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": True}, {"cursor": "nope"},
                                 {"where": {"n": 1.5}}])
def test_bad_arguments_are_value_errors(make_backend: MakeBackend, bad: dict[str, Any]
                                        ) -> None:
    with pytest.raises(ValueError):
        make_backend().list_summaries(**bad)


def test_a_cursor_of_the_other_order_is_refused(make_backend: MakeBackend) -> None:
    backend = make_backend()
    for number in range(3):
        backend.append(f"s{number}", numbered_records(1))
    cursor = backend.list_summaries(limit=1).cursor
    with pytest.raises(ValueError, match="other order"):
        backend.list_summaries(newest_first=False, cursor=cursor)


# ---- broken listings fail the tests ----------------------------------------------------------


class SkipsAfterACursor(RocksetBackend):
    def list_summaries(self, **listing: Any) -> SummaryPage:
        page: SummaryPage = super().list_summaries(**listing)
        if listing.get("cursor"):
            return SummaryPage(page.summaries[1:], page.cursor)
        return page


class ListsClearedSessions(RocksetBackend):
    def session_summaries(self, session_ids: Any) -> Any:
        found = super().session_summaries(session_ids)
        now = datetime.now(UTC)
        return {session_id: found.get(session_id) or SessionSummary(
            session_id, None, None, {}, now, now, 0) for session_id in session_ids}


class CreatedMovesWithEachWrite(RocksetBackend):
    def _summary(self, row: Any) -> SessionSummary:
        summary = super()._summary(row)
        return dataclasses.replace(summary, created_at=summary.updated_at)


class IgnoresTheOrder(RocksetBackend):
    def list_summaries(self, **listing: Any) -> SummaryPage:
        listing["newest_first"] = True
        page: SummaryPage = super().list_summaries(**listing)
        return page


def _keyset_test(backend: RocksetBackend, make_id: Callable[[str], str]) -> None:
    ids = [make_id(f"s{number}") for number in range(5)]
    for session_id in ids:
        backend.append(session_id, numbered_records(1))
        time.sleep(0.002)  # distinct write times
    assert every_id(backend, limit=2) == ids[::-1]


CONTRACT = CatalogContract()


@pytest.fixture
def broken(emu: RocksetEmulator) -> Iterator[Callable[[type[RocksetBackend]], RocksetBackend]]:
    built: list[RocksetBackend] = []

    def make(kind: type[RocksetBackend]) -> RocksetBackend:
        backend = kind.from_options(api_key="test-key", host=emu.url,
                                    collection=f"broken_{next(_names)}")
        backend.create_collection()
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()


@pytest.mark.parametrize(("kind", "test"), [
    (SkipsAfterACursor, _keyset_test),
    (ListsClearedSessions, CONTRACT.test_catalog_counts_and_times_follow_append_and_clear),
    (CreatedMovesWithEachWrite, CONTRACT.test_catalog_counts_and_times_follow_append_and_clear),
    (IgnoresTheOrder, CONTRACT.test_catalog_lists_newest_or_oldest_first_by_update_time),
], ids=lambda value: getattr(value, "__name__", ""))
def test_a_broken_listing_fails_the_tests(
        broken: Callable[[type[RocksetBackend]], RocksetBackend], kind: type[RocksetBackend],
        test: Callable[[Any, Callable[[str], str]], None]) -> None:
    backend = broken(kind)
    assert isinstance(backend, ListsSummaries)
    with pytest.raises(AssertionError):
        test(backend, lambda name: f"{name}-{next(_names)}")
    # The same test passes on the backend itself.
    test(broken(RocksetBackend), lambda name: f"{name}-{next(_names)}")


# ---- the way out keeps the sessions' age -----------------------------------------------------


def test_a_copy_to_sqlite_keeps_the_times_and_a_prune_there_sees_them(
        emu: RocksetEmulator, make_backend: MakeBackend, tmp_path: Path) -> None:
    source = make_backend()
    long_ago = datetime.now(UTC) - timedelta(days=200)
    documents(emu, source, {"_id": "old", "messages": [{"type": "human", "data": {
        "content": "hi", "type": "human"}}], "last_write": stamp(long_ago + timedelta(days=1)),
        "_event_time": stamp(long_ago)})
    source.append("new", numbered_records(2))
    target = get_backend("sqlite", path=str(tmp_path / "out.sqlite3"))
    try:
        report = copy_sessions(source, target)
        assert (report.sessions, report.messages, report.summaries) == (2, 3, 2)
        assert isinstance(target, KeepsCatalog)
        copied = target.session_summaries(["old", "new"])
        for session_id, summary in source.session_summaries(["old", "new"]).items():
            assert abs(copied[session_id].updated_at - summary.updated_at) < timedelta(
                milliseconds=1)
            assert abs(copied[session_id].created_at - summary.created_at) < timedelta(
                milliseconds=1)
        assert isinstance(target, PrunesSessions)
        assert target.delete_sessions_before(datetime.now(UTC) - timedelta(days=90)) == 1
        assert target.fetch("old") == [] and len(target.fetch("new")) == 2
    finally:
        target.close()


def test_the_cli_lists_newest_first_and_refuses_an_owner_with_the_way_out(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    for number in range(3):
        backend.append(f"s{number}", numbered_records(number + 1))
    options = ["-b", "rockset", "-o", "api_key=test-key", "-o", f"host={emu.url}",
               "-o", f"collection={backend.config.collection}"]
    listed = CliRunner().invoke(main, ["sessions", *options, "--newest", "-n", "2", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["session_id"], row["messages"]) for row in rows] == [("s2", 3), ("s1", 2)]
    assert "--cursor" in listed.stderr
    refused = CliRunner().invoke(main, ["sessions", *options, "--owner", "ada"])
    assert refused.exit_code != 0
    assert "cannot list sessions by an owner" in refused.output + refused.stderr


def test_listing_a_missing_collection_creates_nothing(emu: RocksetEmulator,
                                                      make_backend: MakeBackend) -> None:
    backend = make_backend(create=False)
    for read in (lambda: backend.list_summaries(), lambda: backend.session_summaries(["s"])):
        with pytest.raises(CollectionMissingError):
            read()
    assert backend.config.collection not in {
        found.get("name") for found in emu.client().Collections.list().data}


def test_a_page_is_retried_after_an_unavailable_answer(emu: RocksetEmulator,
                                                       make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1))
    expected = backend.list_summaries()
    emu.fail_next(1, status=503)
    emu.reset_request_count()
    assert backend.list_summaries() == expected
    assert emu.requests == [QUERY, QUERY]
