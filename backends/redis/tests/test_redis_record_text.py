"""Records as their JSON text (CopiesRecordText): the text Redis holds, carried undecoded.

The capability's contract runs in test_redis_contract.py; these are what is Redis's own.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import pytest
import redis
from chathistory_redis import RedisBackend

from chathistory import ChatHistoryError, RecordError
from chathistory.capabilities import capabilities_of
from chathistory.testing import numbered_records, run_without_blocking, sample_messages
from chathistory.transfer import copy_sessions

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RedisChatMessageHistory

MakeBackend = Callable[..., RedisBackend]


def _peer_writes(redis_url: str, key_prefix: str, session_id: str) -> None:
    peer = RedisChatMessageHistory(session_id, url=redis_url, key_prefix=key_prefix)
    for message in sample_messages():
        peer.add_message(message)  # json.dumps' text: spaces, \u escapes


def test_the_backend_declares_record_text(make_backend: MakeBackend) -> None:
    assert "record_text" in capabilities_of(make_backend())


def test_fetch_many_text_gives_the_text_redis_holds_oldest_first(
        make_backend: MakeBackend, redis_url: str, prefix: str, raw: redis.Redis) -> None:
    _peer_writes(redis_url, f"{prefix}:", "s")
    backend = make_backend(layout="langchain_community")
    held = [value.decode() for value in reversed(raw.lrange(f"{prefix}:s", 0, -1))]
    fetched = backend.fetch_many_text(["s", "none"])
    assert fetched == {"s": held}  # not re-encoded: json.dumps' own spaces are kept
    assert [json.loads(text) for text in fetched["s"]] == backend.fetch_many(["s"])["s"]
    assert run_without_blocking(backend.afetch_many_text(["none", "s"])) == fetched


def test_append_many_text_stores_each_text_as_given(
        make_backend: MakeBackend, redis_url: str, prefix: str, raw: redis.Redis) -> None:
    spaced = [json.dumps(record, sort_keys=True) for record in numbered_records(2)]
    backend = make_backend()
    backend.append_many_text({"a": spaced, "b": spaced[:1], "c": []})
    run_without_blocking(backend.aappend_many_text({"b": spaced[1:]}))
    assert raw.lrange(backend.key("a"), 0, -1) == [text.encode() for text in spaced]
    assert raw.lrange(backend.key("b"), 0, -1) == [text.encode() for text in spaced]
    assert [info.session_id for info in backend.list_sessions()] == ["a", "b"]
    # In the peer's layout, newest first, and the peer reads them.
    peer_layout = make_backend(layout="langchain_community")
    peer_layout.append_many_text({"p": [json.dumps(record) for record in numbered_records(2)]})
    peer = RedisChatMessageHistory("p", url=redis_url, key_prefix=f"{prefix}:")
    assert [message.content for message in peer.messages] == ["m0", "m1"]


def test_a_text_that_is_no_utf_8_is_refused_before_anything_is_written(
        make_backend: MakeBackend) -> None:
    backend = make_backend()
    good = [json.dumps(record) for record in numbered_records(2)]
    lone = '{"type": "human", "data": {"content": "\udc80"}}'  # a lone surrogate
    with pytest.raises(RecordError, match=r"record 1 of session 'b'.*surrogate"):
        backend.append_many_text({"a": good, "b": [good[0], lone]})
    with pytest.raises(RecordError, match="surrogate"):
        run_without_blocking(backend.aappend_many_text({"a": good, "b": [lone]}))
    with pytest.raises(TypeError, match="not one str"):
        backend.append_many_text({"a": good[0]})  # type: ignore[dict-item]
    assert backend.fetch_many(["a", "b"]) == {} and backend.list_sessions() == []


# Only a value that does not start with '{' is decoded to be checked (see the docs).
@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'"text"', b'{"a": "\xff"}', b""])
def test_fetch_many_text_refuses_what_fetch_many_refuses(make_backend: MakeBackend,
                                                         raw: redis.Redis, value: bytes) -> None:
    backend = make_backend()
    raw.rpush(backend.key("bad"), b'{"type": "human", "data": {"content": "ok"}}', value)
    for read in (backend.fetch_many, backend.fetch_many_text):
        with pytest.raises(ChatHistoryError, match="value 1 of this session's list is not"):
            read(["bad"])


def test_a_text_with_whitespace_around_it_is_given_without(make_backend: MakeBackend,
                                                           raw: redis.Redis) -> None:
    backend = make_backend()
    raw.rpush(backend.key("s"), b' \n{"type": "human", "data": {"content": "x"}}\r\n')
    (text,) = backend.fetch_many_text(["s"])["s"]
    assert text == '{"type": "human", "data": {"content": "x"}}'
    assert [json.loads(text)] == backend.fetch_many(["s"])["s"]


def test_a_copy_between_redis_stores_carries_the_text_undecoded(
        make_backend: MakeBackend, redis_url: str, prefix: str, raw: redis.Redis) -> None:
    _peer_writes(redis_url, f"{prefix}:", "s")
    source = make_backend(layout="langchain_community")
    target = make_backend(key_prefix=f"{prefix}:new")
    target.append("s", [source.fetch("s")[0]])  # the target holds the start already
    report = copy_sessions(source, target)
    assert (report.sessions, report.messages, report.mismatched) == (1, 7, [])
    source_values = raw.lrange(source.key("s"), 0, -1)[::-1]
    # The first, appended as a record, was encoded compactly; the rest are the peer's text.
    assert raw.lrange(target.key("s"), 1, -1) == source_values[1:]
    assert target.fetch("s") == source.fetch("s")
