"""Sessions as data on Rockset: listing, write times, bulk reads, and reads that create nothing.

The contract suite (test_rockset_backend.py) tests the declared capabilities;
these tests pin what is Rockset's own: the requests each call costs, the write
time field next to langchain_community's layout, what that class's writes look
like in a listing, ``fetch_many`` (not declared, see the docs), and a missing
collection.
"""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from chathistory_rockset.backend import MAX_IDS_PER_QUERY, RocksetBackend
from langchain_core.messages import HumanMessage, message_to_dict
from rockset_emulator import RocksetEmulator

from chathistory import (
    BackendUnavailableError,
    CollectionMissingError,
    ConfigError,
    get_backend,
)
from chathistory.capabilities import SessionInfo, capabilities_of
from chathistory.testing import numbered_records

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RocksetChatMessageHistory

MakeBackend = Callable[..., RocksetBackend]
QUERY = ("POST", "/v1/orgs/self/queries")
_names = itertools.count()


def theirs(emu: RocksetEmulator, backend: RocksetBackend, session_id: str
           ) -> RocksetChatMessageHistory:
    return RocksetChatMessageHistory(session_id=session_id, client=emu.client(),
                                     collection=backend.config.collection)


def test_rockset_declares_listing_write_times_and_bulk_reads_only(make_backend: MakeBackend
                                                                  ) -> None:
    # No bulk writes (a write request is answered per document), no pruning and no catalog
    # writes (owners, titles, metadata): the catalog's read side only (see the docs).
    assert capabilities_of(make_backend()) == {"list_sessions", "last_write", "fetch_many",
                                               "summaries"}


def test_a_page_of_sessions_is_one_query(emu: RocksetEmulator, make_backend: MakeBackend
                                         ) -> None:
    backend = make_backend()
    for number in range(5):
        backend.append(f"s{number}", numbered_records(number + 1))
    emu.reset_request_count()
    page = backend.list_sessions(after="s1", limit=2)
    assert [(info.session_id, info.messages) for info in page] == [("s2", 3), ("s3", 4)]
    assert emu.requests == [QUERY]


def test_each_append_sets_the_write_time_in_the_same_request(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    before = datetime.now(UTC)
    backend.append("s", numbered_records(1))  # creates the document
    emu.reset_request_count()
    backend.append("s", numbered_records(1, prefix="b"))  # patches it
    assert [method for method, _ in emu.requests] == ["PATCH"]
    document = emu.documents("commons", backend.config.collection)["s"]
    assert set(document) == {"_id", "messages", "last_write", "_event_time"}
    assert document["_event_time"] < document["last_write"]  # set by the first append
    written = datetime.strptime(document["last_write"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert written.replace(tzinfo=UTC) == backend.last_write("s")
    assert before <= written.replace(tzinfo=UTC) <= datetime.now(UTC)


def test_the_write_time_field_is_an_option(emu: RocksetEmulator, make_backend: MakeBackend
                                           ) -> None:
    backend = make_backend(last_write_key="updated_at")
    backend.append("s", numbered_records(2))
    assert set(emu.documents("commons", backend.config.collection)["s"]) == {
        "_id", "messages", "updated_at", "_event_time"}
    (info,) = backend.list_sessions()
    assert info.messages == 2 and info.last_write == backend.last_write("s") is not None
    with pytest.raises(ConfigError, match="'last_write_key' must differ"):
        get_backend("rockset", api_key="k", collection="c", last_write_key="messages")


def test_sessions_written_by_langchain_community_are_listed_without_a_time(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    theirs(emu, backend, "theirs").add_message(HumanMessage("one"))
    theirs(emu, backend, "theirs").add_message(HumanMessage("two"))
    backend.append("ours", numbered_records(1))
    assert backend.list_sessions() == [
        SessionInfo("ours", 1, backend.last_write("ours")),
        SessionInfo("theirs", 2, None),
    ]
    assert backend.last_write("theirs") is None
    # Our append dates the session; a later append of theirs keeps our field as it is.
    backend.append("theirs", numbered_records(1))
    ours_time = backend.last_write("theirs")
    assert ours_time is not None
    theirs(emu, backend, "theirs").add_message(HumanMessage("four"))
    assert backend.list_sessions(after="ours") == [SessionInfo("theirs", 4, ours_time)]
    # Their clear replaces the document, time included: no records, no write time.
    theirs(emu, backend, "theirs").clear()
    assert backend.last_write("theirs") is None
    assert [info.session_id for info in backend.list_sessions()] == ["ours"]


def test_a_write_time_this_backend_did_not_write_is_an_error(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    emu.client().Documents.add_documents(collection=backend.config.collection, data=[
        {"_id": "s", "messages": numbered_records(1), "last_write": "yesterday"}])
    with pytest.raises(Exception, match="'last_write' of a session's document is not a time"):
        backend.list_sessions()


def test_page_limit_is_checked_before_any_request(emu: RocksetEmulator,
                                                  make_backend: MakeBackend) -> None:
    backend = make_backend()
    emu.reset_request_count()
    for limit in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="limit"):
            backend.list_sessions(limit=limit)  # type: ignore[arg-type]
    assert emu.request_count == 0


@pytest.mark.parametrize("read", ["list_sessions", "last_write", "fetch_many"])
def test_session_reads_are_retried_then_reported_unavailable(
        emu: RocksetEmulator, make_backend: MakeBackend, read: str) -> None:
    backend = make_backend(retry_attempts=3)
    backend.append("s", numbered_records(2))
    calls: dict[str, Callable[[], object]] = {
        "list_sessions": lambda: [info.messages for info in backend.list_sessions()],
        "last_write": lambda: backend.last_write("s") is not None,
        "fetch_many": lambda: len(backend.fetch_many(["s"])["s"]),
    }
    expected = calls[read]()
    emu.fail_next(2, status=503)
    assert calls[read]() == expected
    emu.fail_next(3, status=503)
    with pytest.raises(BackendUnavailableError, match="unavailable after 3 attempts"):
        calls[read]()


# ---- fetch_many --------------------------------------------------------------------------


def test_fetch_many_reads_many_sessions_in_one_query(emu: RocksetEmulator,
                                                     make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("a", numbered_records(3, prefix="a"))
    backend.append("b", [message_to_dict(HumanMessage("b", id="m1"))])
    backend.append("cleared", numbered_records(1))
    backend.clear("cleared")
    emu.reset_request_count()
    expected = {"b": backend.fetch("b"), "a": numbered_records(3, prefix="a")}
    emu.reset_request_count()
    assert backend.fetch_many(["b", "missing", "a", "cleared", "a"]) == expected
    assert list(backend.fetch_many(["b", "a"])) == ["b", "a"]  # in the order asked
    assert emu.requests == [QUERY, QUERY]
    assert asyncio.run(backend.afetch_many(["a", "b"])) == expected
    emu.reset_request_count()
    assert backend.fetch_many([]) == {}
    with pytest.raises(TypeError, match="a list of ids, not one str"):
        backend.fetch_many("ab")  # not the sessions 'a' and 'b'
    assert emu.request_count == 0


def test_fetch_many_splits_long_lists_of_ids(emu: RocksetEmulator,
                                             make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("last", numbered_records(1))
    ids = [f"id-{number:05}" for number in range(MAX_IDS_PER_QUERY)] + ["last"]
    emu.reset_request_count()
    assert backend.fetch_many(ids) == {"last": numbered_records(1)}
    assert emu.requests == [QUERY, QUERY]


# ---- reading creates nothing ---------------------------------------------------------------


@pytest.mark.parametrize("workspace", ["commons", "no_such_workspace"])
def test_reading_a_missing_collection_creates_nothing_and_says_so(
        emu: RocksetEmulator, make_backend: MakeBackend, workspace: str) -> None:
    name = f"missing_{next(_names)}"
    backend = make_backend(create=False, collection=name, workspace=workspace)
    collections = emu.client().Collections.list().data
    reads: list[Callable[[], object]] = [
        lambda: backend.fetch("s"),
        lambda: backend.fetch("s", limit=2),
        lambda: backend.list_sessions(),
        lambda: backend.last_write("s"),
        lambda: backend.fetch_many(["s", "t"]),
        lambda: asyncio.run(backend.afetch("s")),
        lambda: asyncio.run(backend.alist_sessions()),
    ]
    emu.reset_request_count()
    for read in reads:
        with pytest.raises(CollectionMissingError) as raised:
            read()
        assert str(raised.value) == (
            f"backend 'rockset': collection {workspace}.{name} does not exist on Rockset at "
            f"{emu.url} (reading created nothing; create_collection() creates it)")
    # Each read: its query, then a look at the collection to tell "missing" from a bad query.
    assert set(emu.requests) == {QUERY, ("GET", f"/v1/orgs/self/ws/{workspace}/collections/{name}")}
    assert emu.client().Collections.list().data == collections


def test_a_bad_query_on_an_existing_collection_is_not_called_missing(
        emu: RocksetEmulator, make_backend: MakeBackend) -> None:
    backend = make_backend()
    emu.client().Documents.add_documents(collection=backend.config.collection,
                                         data=[{"_id": "s", "messages": "not an array"}])
    with pytest.raises(Exception) as raised:
        backend.list_sessions()
    assert not isinstance(raised.value, CollectionMissingError)
    assert "ARRAY_LENGTH expects an array" in str(raised.value)
