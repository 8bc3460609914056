"""The session catalog's Redis-specific cases: a store of the previous version, the peer
class's sessions, a cursor whose session moved, and an erase killed between its steps."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
from chathistory_redis import RedisBackend
from chathistory_redis import keyspace as ks
from langchain_core.messages import HumanMessage

from chathistory.catalog import SessionSummary, erase
from chathistory.testing import numbered_records

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RedisChatMessageHistory

MakeBackend = Callable[..., RedisBackend]


def _ids(backend: RedisBackend, **listing: object) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = backend.list_summaries(limit=2, cursor=cursor, **listing)  # type: ignore[arg-type]
        ids += [summary.session_id for summary in page.summaries]
        if page.cursor is None:
            return ids
        cursor = page.cursor


def test_a_store_of_the_previous_version_is_listed_and_upgrades_in_place(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend()
    by_id, by_time = backend.index_keys
    written = datetime.now(UTC) - timedelta(days=3)
    # What the previous version wrote: the list and the index's two sets, no catalog.
    raw.rpush(backend.key("old"), *(record for record in [b'{"type":"human","data":{}}'] * 2))
    raw.zadd(by_id, {"old": 0})
    raw.zadd(by_time, {"old": written.timestamp()})
    summary = backend.session_summaries(["old"])["old"]
    assert (summary.messages, summary.owner) == (2, None)
    assert abs(summary.updated_at - written) < timedelta(milliseconds=1)
    assert summary.created_at == summary.updated_at  # none was kept: the last write stands in
    assert _ids(backend) == ["old"]
    backend.update_session("old", owner="ada", title="From before")
    backend.append("old", numbered_records(1))
    after = backend.session_summaries(["old"])["old"]
    assert (after.messages, after.owner, after.title) == (3, "ada", "From before")
    assert after.updated_at > written
    assert _ids(backend, owner="ada") == ["old"]
    assert erase(backend, owner="ada").messages == 3
    assert raw.exists(backend.key("old")) == 0


def test_the_peer_classes_sessions_appear_once_indexed(
        make_backend: MakeBackend, redis_url: str, prefix: str) -> None:
    peer = RedisChatMessageHistory("peer-1", url=redis_url, key_prefix=f"{prefix}:")
    peer.add_message(HumanMessage("hello"))
    backend = make_backend(layout="langchain_community")  # create_collection indexes it
    assert _ids(backend) == ["peer-1"]
    later = RedisChatMessageHistory("peer-2", url=redis_url, key_prefix=f"{prefix}:")
    later.add_message(HumanMessage("unseen"))
    assert _ids(backend) == ["peer-1"]  # written beside us: not catalogued yet
    assert backend.session_summaries(["peer-2"]) == {}
    peer.add_message(HumanMessage("counted at once"))  # the count is the list's own length
    assert backend.session_summaries(["peer-1"])["peer-1"].messages == 2
    backend.reindex()
    assert sorted(_ids(backend)) == ["peer-1", "peer-2"]
    backend.update_session("peer-2", owner="ada")
    assert _ids(backend, owner="ada") == ["peer-2"]


def test_a_cursor_whose_session_was_written_since_continues_past_its_place(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    base = datetime.now(UTC) - timedelta(days=1)
    ids = [f"tie-{letter}" for letter in "abcdef"]
    backend.restore_summaries([SessionSummary(session_id, "ada", None, {}, base, base, 0)
                               for session_id in ids])  # one time: ties all along
    for newest_first in (True, False):
        order = ids[::-1] if newest_first else ids
        first = backend.list_summaries(owner="ada", limit=3, newest_first=newest_first)
        assert [summary.session_id for summary in first.summaries] == order[:3]
        moved = order[2]
        backend.append(moved, numbered_records(1))  # the cursor's session leaves its place
        rest = backend.list_summaries(owner="ada", limit=10, newest_first=newest_first,
                                      cursor=first.cursor)
        listed = [summary.session_id for summary in rest.summaries]
        assert [session for session in listed if session != moved] == order[3:]
        backend.restore_summaries([SessionSummary(moved, "ada", None, {}, base, base, 0)])


def test_an_erase_killed_after_the_messages_finishes_when_run_again(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend()
    for session_id in ("gone", "kept"):
        backend.append(session_id, numbered_records(2))
        backend.update_session(session_id, owner="ada" if session_id == "gone" else "bob")
    raw.delete(backend.key("gone"))  # a cluster's erase killed between its two steps
    assert _ids(backend, owner="ada") == ["gone"]  # still listed: its erasure is not done
    receipt = erase(backend, owner="ada")
    assert (receipt.sessions, receipt.messages) == (1, 0)
    assert _ids(backend, owner="ada") == [] and backend.session_summaries(["gone"]) == {}
    assert backend.session_summaries(["kept"])["kept"].messages == 2


def test_a_catalog_entry_without_messages_or_description_is_not_listed(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    """A cluster's append whose index step ran and whose push did not, or an expired list."""
    backend = make_backend()
    backend.append("pushed", numbered_records(1))
    raw.delete(backend.key("pushed"))
    assert _ids(backend) == [] and backend.session_summaries(["pushed"]) == {}
    backend.reindex()
    assert raw.zscore(backend.index_keys[1], "pushed") is None


def test_an_append_moves_the_session_in_its_owners_listing(make_backend: MakeBackend) -> None:
    backend = make_backend()
    for session_id in ("first", "second"):
        backend.append(session_id, numbered_records(1))
        backend.update_session(session_id, owner="ada")
    assert _ids(backend, owner="ada") == ["second", "first"]
    backend.append("first", numbered_records(1))
    page = backend.list_summaries(owner="ada")
    assert [summary.session_id for summary in page.summaries] == ["first", "second"]
    assert page.summaries[0] == backend.session_summaries(["first"])["first"]


def test_thousands_of_sessions_are_described_and_erased_in_one_call(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    """The scripts read and forget entries 1,000 to a command (unpack's limit); more
    than that, over two owners, in one call."""
    backend = make_backend()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    owners = {f"s{number}": "ada" if number < 1200 else "bob" for number in range(2300)}
    backend.append_many({session_id: numbered_records(2) for session_id in [*owners, "cy's"]})
    backend.restore_summaries([
        SessionSummary(session_id, owner, "t", {"k": 1}, base, base + timedelta(seconds=n), 0)
        for n, (session_id, owner) in enumerate([*owners.items(), ("cy's", "cy")])])
    described = backend.session_summaries([*owners, "cy's"])  # read 1,000 to a command too
    assert {id_: summary.owner for id_, summary in described.items()} == {**owners, "cy's": "cy"}
    page = backend.list_summaries(owner="bob", newest_first=False, limit=1500)
    assert [summary.session_id for summary in page.summaries] == list(owners)[1200:]
    assert {(summary.title, summary.metadata["k"]) for summary in page.summaries} == {("t", 1)}
    receipt = backend.erase_sessions([*owners, "never-written"])
    assert (receipt.sessions, receipt.messages) == (2300, 4600)
    index = ks.index_keys("chathistory", backend.config.effective_key_prefix)
    for key in (index.by_id, index.by_time, index.owned + b"cy"):
        assert raw.zrange(key, 0, -1) == [b"cy's"]
    for key in (index.owners, index.titles, index.metadata, index.created):
        assert raw.hkeys(key) == [b"cy's"]
    assert raw.smembers(index.kept) == {b"cy's"}
    assert raw.exists(index.owned + b"ada", index.owned + b"bob") == 0
    assert raw.exists(*(backend.key(session_id) for session_id in owners)) == 0
    assert backend.session_summaries(["cy's"])["cy's"].messages == 2
