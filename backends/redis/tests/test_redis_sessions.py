"""The sessions index: expiry, the backfill of older keys, pruning, async without blocking,
and the migration from RedisChatMessageHistory's keys to the chathistory layout."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from chathistory_redis import RedisBackend
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict, messages_from_dict

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
def test_an_expired_session_drops_out_of_the_listing_and_the_index(
        make_backend: MakeBackend, raw: redis.Redis, wait_until: WaitUntil, layout: str) -> None:
    backend = make_backend(layout=layout, ttl=3600)
    ids = [f"s{number}" for number in range(6)]
    for session_id in ids:
        backend.append(session_id, numbered_records(1))
    _expire_now(raw, wait_until, *(backend.key(session_id) for session_id in ids[:3]))
    # A first page whose sessions have all expired is not taken for the end.
    assert _ids(backend, limit=2) == ["s3", "s4"]
    assert _ids(backend, after="s4", limit=2) == ["s5"]
    by_id, by_time = backend.index_keys
    assert raw.zrange(by_id, 0, -1) == [b"s3", b"s4", b"s5"]  # dropped from the index
    assert raw.zcard(by_time) == 3
    assert backend.last_write("s0") is None
    future = datetime.now(UTC) + timedelta(days=1)
    assert backend.delete_sessions_before(future, dry_run=True) == 3


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


def test_a_naive_cutoff_is_refused(make_backend: MakeBackend) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_backend().delete_sessions_before(datetime.now())


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
