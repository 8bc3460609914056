"""The sessions index: expiry, the backfill of older keys, pruning, async without blocking,
reads (and read-only commands) that write nothing to a store never indexed, and the
migration from RedisChatMessageHistory's keys to the chathistory layout."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from chathistory_redis import RedisBackend
from chathistory_redis.backend import PRUNE_BATCH
from chathistory_redis.keyspace import index_keys
from click.testing import CliRunner, Result
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict, messages_from_dict

from chathistory import ChatHistoryError, get_backend
from chathistory.capabilities import SessionInfo
from chathistory.cli import main
from chathistory.testing import numbered_records, run_without_blocking, sample_messages
from chathistory.transfer import copy_sessions, count_records

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RedisChatMessageHistory

MakeBackend = Callable[..., RedisBackend]
WaitUntil = Callable[..., None]


def _expire_now(raw: redis.Redis, wait_until: WaitUntil, *keys: bytes) -> None:
    """Let ``keys`` expire, as a ttl would, and wait until Redis no longer has them."""
    for key in keys:
        raw.pexpire(key, 1)
    wait_until(lambda: not raw.exists(*keys), "the keys have expired")


def _ids(backend: RedisBackend, **options: object) -> list[str]:
    return [info.session_id for info in backend.list_sessions(**options)]  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["chathistory", "langchain_community"])
def test_an_expired_session_is_not_listed_and_reindex_drops_it_from_the_index(
        make_backend: MakeBackend, raw: redis.Redis, wait_until: WaitUntil, layout: str) -> None:
    backend = make_backend(layout=layout, ttl=3600)
    ids = [f"s{number}" for number in range(6)]
    for session_id in ids:
        backend.append(session_id, numbered_records(1))
    _expire_now(raw, wait_until, *(backend.key(session_id) for session_id in ids[:3]))
    by_id, by_time = backend.index_keys
    index_before = (raw.dump(by_id), raw.dump(by_time))
    # A first page whose sessions have all expired is not taken for the end.
    assert _ids(backend, limit=2) == ["s3", "s4"]
    assert _ids(backend, after="s4", limit=2) == ["s5"]
    assert backend.last_write("s0") is None
    future = datetime.now(UTC) + timedelta(days=1)
    assert backend.delete_sessions_before(future, dry_run=True) == 3
    assert (raw.dump(by_id), raw.dump(by_time)) == index_before  # reads wrote nothing
    assert backend.reindex() == 3  # a write command: it drops the entries of expired ones
    assert raw.zrange(by_id, 0, -1) == [b"s3", b"s4", b"s5"]
    assert raw.zrange(by_time, 0, -1) == [b"s3", b"s4", b"s5"]
    assert _ids(backend) == ["s3", "s4", "s5"]


def test_a_dry_run_does_not_count_an_expired_session(make_backend: MakeBackend, raw: redis.Redis,
                                                     wait_until: WaitUntil) -> None:
    backend = make_backend(ttl=3600)
    backend.append("gone", numbered_records(1))
    backend.append("kept", numbered_records(1))
    _expire_now(raw, wait_until, backend.key("gone"))
    future = datetime.now(UTC) + timedelta(days=1)
    assert backend.delete_sessions_before(future, dry_run=True) == 1
    assert backend.delete_sessions_before(future) == 1  # the expired one held nothing
    assert raw.zcard(backend.index_keys[0]) == 0


def test_with_a_ttl_appends_forget_sessions_that_must_have_expired(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend(ttl=100)
    backend.append("old", numbered_records(1))
    by_id, by_time = backend.index_keys
    raw.zadd(by_time, {"old": time.time() - 101})  # as if last written 101 s ago
    backend.append("new", numbered_records(1))
    assert raw.zrange(by_id, 0, -1) == [b"new"] and raw.zrange(by_time, 0, -1) == [b"new"]


def test_sessions_written_before_the_index_are_found_once_and_by_reindex(
        make_backend: MakeBackend, redis_url: str, prefix: str, raw: redis.Redis) -> None:
    key_prefix = f"{prefix}:"
    for session_id in ("a", "b"):
        RedisChatMessageHistory(session_id, url=redis_url, key_prefix=key_prefix).add_message(
            HumanMessage(session_id))
    raw.set(f"{key_prefix}not-a-list", b"x")  # a key of another type is no session
    backend = make_backend(layout="langchain_community")  # creating it scans once
    backend.append("c", numbered_records(1))
    listed = backend.list_sessions()
    assert [(info.session_id, info.messages) for info in listed] == [("a", 1), ("b", 1), ("c", 1)]
    assert all(info.last_write is not None for info in listed)
    written = backend.last_write("c")
    # A session the peer writes later is not in the index until a reindex.
    RedisChatMessageHistory("d", url=redis_url, key_prefix=key_prefix).add_message(
        HumanMessage("d"))
    assert _ids(make_backend(layout="langchain_community")) == ["a", "b", "c"]
    assert backend.reindex() == 4
    assert _ids(backend) == ["a", "b", "c", "d"]
    assert backend.last_write("c") == written  # known write times are kept


def test_older_chathistory_keys_are_found_too(make_backend: MakeBackend, prefix: str,
                                              raw: redis.Redis) -> None:
    raw.rpush(f"{prefix}:{{old%7Bone%7D}}", b'{"type":"human","data":{"content":"x"}}')
    backend = make_backend()
    assert [(info.session_id, info.messages) for info in backend.list_sessions()] == [
        ("old{one}", 1)]


def test_prune_deletes_each_session_with_its_index_entry(make_backend: MakeBackend,
                                                         raw: redis.Redis) -> None:
    backend = make_backend()
    for number in range(1200):  # more than one batch
        backend.append(f"old-{number:04}", numbered_records(1))
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    by_id, by_time = backend.index_keys
    raw.zadd(by_time, {"new": cutoff.timestamp() + 60})  # written after the cutoff
    backend.append("new", numbered_records(1))
    raw.zadd(by_time, {"new": cutoff.timestamp() + 60})
    assert backend.delete_sessions_before(cutoff, dry_run=True) == 1200
    assert backend.delete_sessions_before(cutoff) == 1200
    assert raw.zrange(by_id, 0, -1) == [b"new"] and raw.zrange(by_time, 0, -1) == [b"new"]
    assert _ids(backend) == ["new"]


def test_a_prune_failing_after_a_batch_says_how_many_sessions_it_pruned(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    # Run again from the start, it would not count the batch it had deleted.
    backend = make_backend()
    backend.append_many({f"old-{number:03}": numbered_records(1)
                         for number in range(PRUNE_BATCH + 1)})
    last = backend.key(f"old-{PRUNE_BATCH:03}")  # the second batch, alone
    raw.delete(last)
    raw.set(last, "not a list")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ChatHistoryError) as caught:
        backend.delete_sessions_before(tomorrow)
    assert f"{PRUNE_BATCH} sessions were pruned, then" in str(caught.value)
    assert "WRONGTYPE" in str(caught.value)
    assert raw.zrange(backend.index_keys[0], 0, -1) == [f"old-{PRUNE_BATCH:03}".encode()]
    assert not raw.exists(backend.key("old-000"))  # the first batch is gone
    raw.delete(last)
    assert backend.delete_sessions_before(tomorrow) == 0  # its entry, without messages
    assert raw.zcard(backend.index_keys[0]) == 0


def test_a_naive_cutoff_is_refused(make_backend: MakeBackend) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_backend().delete_sessions_before(datetime.now())
    with pytest.raises(TypeError, match="cutoff must be a datetime"):
        make_backend().delete_sessions_before(0)  # type: ignore[arg-type]


def test_one_str_of_session_ids_is_refused_and_lone_surrogates_are_kept(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.append("\udc80", numbered_records(1))  # Redis keys hold any str, on purpose
    with pytest.raises(TypeError, match="a list of ids, not one str"):
        backend.session_summaries("\udc80")
    with pytest.raises(TypeError, match="a list of ids, not one str"):
        backend.erase_sessions("\udc80")
    assert list(backend.session_summaries(["\udc80", "\udc80"])) == ["\udc80"]


def test_append_many_is_one_script_all_or_nothing_on_redis(make_backend: MakeBackend,
                                                           raw: redis.Redis) -> None:
    backend = make_backend()
    raw.set(backend.key("blocked"), b"a string")
    from chathistory import ChatHistoryError

    with pytest.raises(ChatHistoryError, match="WRONGTYPE"):
        backend.append_many({"a": numbered_records(2), "blocked": numbered_records(1),
                             "c": numbered_records(1)})
    assert backend.fetch("a") == [] and backend.fetch("c") == []
    assert _ids(backend) == []


def test_the_capabilities_async_twins_never_block_the_event_loop(make_backend: MakeBackend
                                                                 ) -> None:
    backend = make_backend(ttl=3600)

    async def scenario() -> None:
        await backend.aappend_many({"a": numbered_records(2), "b": numbered_records(1)})
        assert [info.session_id for info in await backend.alist_sessions()] == ["a", "b"]
        assert await backend.alast_write("a") is not None
        assert await backend.afetch_many(["a", "b"]) == {"a": numbered_records(2),
                                                         "b": numbered_records(1)}
        future = datetime.now(UTC) + timedelta(days=1)
        assert await backend.adelete_sessions_before(future, dry_run=True) == 2
        assert await backend.areindex() == 2
        assert await backend.adelete_sessions_before(future) == 2
        await backend.acreate_collection()
        await backend.aclose()

    run_without_blocking(scenario())


# Reads of a store never indexed write nothing ------------------------------------------

# RedisChatMessageHistory's sessions (id: how many of sample_messages()); awkward ids too.
PEER_SESSIONS = {"user-2": 3, "user-10": 1, "a b": 2, "é:ü 🧵": 8, "x{y}%7B": 2, "0": 4,
                 "*?[": 1}

Snapshot = dict[bytes, tuple[bytes | None, int]]


@dataclass
class PeerStore:
    url: str
    key_prefix: str
    records: dict[str, list[dict[str, Any]]]  # by session id, in id order

    def options(self) -> dict[str, str]:
        return {"url": self.url, "layout": "langchain_community", "key_prefix": self.key_prefix}

    def backend(self) -> RedisBackend:
        """A backend on the store, as a read-only command builds it (no create_collection)."""
        return RedisBackend.from_options(**self.options())

    def snapshot(self, raw: redis.Redis) -> Snapshot:
        """Every key under the prefix and the index's three keys: its DUMP and its PTTL
        (None and -2 for a key that does not exist)."""
        index = index_keys("langchain_community", self.key_prefix)
        keys = {*raw.scan_iter(match=f"{self.key_prefix}*", count=1000),
                index.by_id, index.by_time, index.scanned}
        return {key: (raw.dump(key), raw.pttl(key)) for key in keys}

    def assert_not_indexed(self, raw: redis.Redis) -> None:
        index = index_keys("langchain_community", self.key_prefix)
        assert raw.exists(index.by_id, index.by_time, index.scanned) == 0


@pytest.fixture
def peer_store(redis_url: str, prefix: str, raw: redis.Redis) -> PeerStore:
    """Sessions written by RedisChatMessageHistory alone: a store without the index."""
    key_prefix = f"{prefix}:peer:"
    records: dict[str, list[dict[str, Any]]] = {}
    for session_id, count in sorted(PEER_SESSIONS.items(), key=lambda item: item[0].encode()):
        peer = RedisChatMessageHistory(session_id, url=redis_url, key_prefix=key_prefix)
        for message in sample_messages()[:count]:
            peer.add_message(message)
        records[session_id] = [message_to_dict(m) for m in sample_messages()[:count]]
    raw.set(f"{key_prefix}not-a-list", b"x")  # a key of another type is no session
    store = PeerStore(redis_url, key_prefix, records)
    store.assert_not_indexed(raw)
    return store


def _pages(backend: RedisBackend, limit: int) -> list[list[SessionInfo]]:
    """Every page, following ``after``; a listing that does not move on fails, not hangs."""
    pages: list[list[SessionInfo]] = []
    after: str | None = None
    for _ in range(len(PEER_SESSIONS) + 2):
        page = backend.list_sessions(after=after, limit=limit)
        if not page:
            return pages
        assert after is None or page[0].session_id.encode() > after.encode()
        pages.append(page)
        after = page[-1].session_id
    raise AssertionError(f"paging by {limit} did not end")


def test_reads_of_a_store_never_indexed_answer_from_its_keys_and_write_nothing(
        peer_store: PeerStore, raw: redis.Redis) -> None:
    before = peer_store.snapshot(raw)
    ids = list(peer_store.records)
    expected = [SessionInfo(session_id, len(records), None)
                for session_id, records in peer_store.records.items()]
    backend = peer_store.backend()
    try:
        for limit in (1, 2, 3, 100):
            pages = _pages(backend, limit)
            assert [info for page in pages for info in page] == expected, limit
            assert all(len(page) <= limit for page in pages)
        assert backend.list_sessions(after=ids[2], limit=2) == expected[3:5]
        assert backend.list_sessions(after=ids[-1]) == []
        assert all(backend.last_write(session_id) is None for session_id in ids)
        assert backend.fetch_many([*ids, "missing"]) == peer_store.records

        async def scenario() -> None:
            assert await backend.alist_sessions(limit=3) == expected[:3]
            assert await backend.alist_sessions(after=ids[3]) == expected[4:]
            assert await backend.alast_write(ids[0]) is None
            assert await backend.afetch_many(ids) == peer_store.records

        run_without_blocking(scenario())
    finally:
        backend.close()
    assert peer_store.snapshot(raw) == before
    peer_store.assert_not_indexed(raw)


def test_a_store_never_indexed_lists_the_write_times_the_index_knows(
        peer_store: PeerStore, raw: redis.Redis) -> None:
    backend = peer_store.backend()
    try:
        backend.append("new", numbered_records(2))  # indexes itself, not the others
        before = peer_store.snapshot(raw)
        written = backend.last_write("new")
        assert written is not None
        listed = {info.session_id: info for info in backend.list_sessions(limit=100)}
        assert list(listed) == sorted([*peer_store.records, "new"], key=str.encode)
        assert listed["new"] == SessionInfo("new", 2, written)
        assert all(listed[session_id].last_write is None for session_id in peer_store.records)
        assert peer_store.snapshot(raw) == before
        backend.create_collection()  # a write command: the backfill, once
        assert all(info.last_write is not None for info in backend.list_sessions(limit=100))
        assert backend.last_write("new") == written
    finally:
        backend.close()


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_the_read_only_commands_on_a_store_never_indexed_write_nothing(
        peer_store: PeerStore, raw: redis.Redis, tmp_path: Path) -> None:
    before = peer_store.snapshot(raw)
    options = [argument for name, value in peer_store.options().items()
               for argument in ("-o", f"{name}={value}")]

    listed = _cli("sessions", "-b", "redis", *options)
    assert listed.stdout.splitlines() == [f"{session_id}\t{len(records)}\t-" for
                                          session_id, records in peer_store.records.items()]
    as_json = _cli("sessions", "-b", "redis", *options, "--json", "--after", "a b", "-n", "2")
    after_a_b = list(peer_store.records)[list(peer_store.records).index("a b") + 1:][:2]
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
        {"session_id": session_id, "messages": len(peer_store.records[session_id]),
         "last_write": None} for session_id in after_a_b]

    exported = _cli("export", "-b", "redis", *options)
    assert [json.loads(line) for line in exported.stdout.splitlines()] == [
        {"session_id": session_id, "record": record}
        for session_id, records in peer_store.records.items() for record in records]

    target = tmp_path / "copy.sqlite3"
    _cli("copy", "-b", "redis", *options, "--to", "sqlite", "-O", f"path={target}")
    copied = get_backend("sqlite", path=str(target))
    try:
        assert {session_id: copied.fetch(session_id) for session_id in peer_store.records} == (
            peer_store.records)
    finally:
        copied.close()

    assert peer_store.snapshot(raw) == before
    peer_store.assert_not_indexed(raw)


def test_a_prune_of_a_store_never_indexed_builds_the_index_and_prunes(
        peer_store: PeerStore, raw: redis.Redis) -> None:
    index = index_keys("langchain_community", peer_store.key_prefix)
    backend = peer_store.backend()
    try:
        past = datetime.now(UTC) - timedelta(days=1)
        # The peer's sessions are backfilled as written now: none is older than a day.
        assert backend.delete_sessions_before(past) == 0
        assert raw.exists(index.scanned)
        ids = [session_id.encode() for session_id in peer_store.records]
        assert raw.zrange(index.by_id, 0, -1) == ids
        assert sorted(raw.zrange(index.by_time, 0, -1)) == sorted(ids)
        assert all(backend.last_write(session_id) is not None
                   for session_id in peer_store.records)
        future = datetime.now(UTC) + timedelta(days=1)
        assert backend.delete_sessions_before(future) == len(peer_store.records)
        assert backend.list_sessions() == []
        assert raw.exists(*(peer_store.key_prefix.encode() + i for i in ids)) == 0
        assert raw.get(f"{peer_store.key_prefix}not-a-list") == b"x"  # no session: kept
    finally:
        backend.close()


def test_a_dry_run_prune_of_a_store_never_indexed_writes_nothing_and_counts_as_a_prune_would(
        peer_store: PeerStore, raw: redis.Redis) -> None:
    before = peer_store.snapshot(raw)
    backend = peer_store.backend()
    try:
        past = datetime.now(UTC) - timedelta(days=1)
        future = datetime.now(UTC) + timedelta(days=1)
        backend.append("new", numbered_records(1))  # indexed as written now, like a backfill
        written = peer_store.snapshot(raw)
        assert backend.delete_sessions_before(past, dry_run=True) == 0
        assert backend.delete_sessions_before(future, dry_run=True) == len(
            peer_store.records) + 1
        assert run_without_blocking(backend.adelete_sessions_before(
            future, dry_run=True)) == len(peer_store.records) + 1
        assert peer_store.snapshot(raw) == written
        assert not raw.exists(index_keys("langchain_community", peer_store.key_prefix).scanned)
        assert backend.delete_sessions_before(future) == len(peer_store.records) + 1
    finally:
        backend.close()
    assert before != written


def test_a_session_deleted_behind_the_backends_back_is_skipped_until_reindex(
        make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend()
    for session_id in ("a", "b", "c"):
        backend.append(session_id, numbered_records(1))
    raw.delete(backend.key("b"))  # as RedisChatMessageHistory.clear() does
    by_id, by_time = backend.index_keys
    assert _ids(backend, limit=1) == ["a"] and _ids(backend, after="a", limit=1) == ["c"]
    assert raw.zrange(by_id, 0, -1) == [b"a", b"b", b"c"]  # the listing wrote nothing
    assert backend.reindex() == 2
    assert raw.zrange(by_id, 0, -1) == [b"a", b"c"] and raw.zcard(by_time) == 2


# Migration: RedisChatMessageHistory's keys -> the chathistory layout ------------------------

def test_migrating_the_peers_keys_to_the_chathistory_layout(
        make_backend: MakeBackend, redis_url: str, prefix: str) -> None:
    peer_prefix = f"{prefix}:old:"
    conversations = {
        f"user-{number}": [*sample_messages(), HumanMessage(f"number {number}", id=f"h{number}"),
                           AIMessage("é 🧵 \x00 nul", name="bot")]
        for number in range(25)}
    for session_id, messages in conversations.items():
        peer = RedisChatMessageHistory(session_id, url=redis_url, key_prefix=peer_prefix)
        for message in messages:
            peer.add_message(message)  # the peer's own writes, one LPUSH each
    source = RedisBackend.from_options(url=redis_url, layout="langchain_community",
                                       key_prefix=peer_prefix)
    target = make_backend(key_prefix=f"{prefix}:new")
    try:
        report = copy_sessions(source, target)
        assert (report.sessions, report.complete, report.mismatched) == (25, 0, [])
        assert report.messages == sum(len(messages) for messages in conversations.values())
        for session_id, messages in conversations.items():
            assert target.fetch(session_id) == [message_to_dict(m) for m in messages]
            assert messages_from_dict(target.fetch(session_id)) == messages
        again = copy_sessions(source, target)  # a second run writes nothing
        assert (again.messages, again.complete, again.mismatched) == (0, 25, [])
        ids = sorted(conversations)
        counts = count_records(target, ids)
        assert counts == count_records(source, ids)
        assert counts == {session_id: len(conversations[session_id]) for session_id in ids}
        assert [info.session_id for info in target.list_sessions()] == ids
    finally:
        source.close()
