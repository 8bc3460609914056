"""In place on data of langchain_community's RedisChatMessageHistory, both ways."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable

import pytest
import redis
from chathistory_redis import RedisBackend
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

from chathistory import ChatHistory
from chathistory.testing import sample_messages

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RedisChatMessageHistory

MakeBackend = Callable[..., RedisBackend]


def _peer(session_id: str, url: str, prefix: str, **options: object) -> RedisChatMessageHistory:
    return RedisChatMessageHistory(session_id, url=url, key_prefix=f"{prefix}:", **options)


def test_reads_and_extends_what_the_peer_wrote(make_backend: MakeBackend, redis_url: str,
                                              prefix: str, raw: redis.Redis) -> None:
    messages = sample_messages()
    peer = _peer("user-42", redis_url, prefix)
    for message in messages[:5]:
        peer.add_message(message)  # one LPUSH each, newest first
    assert raw.lindex(f"{prefix}:user-42", 0) == json.dumps(message_to_dict(messages[4])).encode()

    history = ChatHistory("user-42", backend=make_backend(layout="langchain_community"))
    assert history.messages == messages[:5]
    assert history.get_messages(limit=2) == messages[3:5]
    assert asyncio.run(history.aget_messages()) == messages[:5]

    history.add_messages(messages[5:7])
    asyncio.run(history.aadd_messages(messages[7:]))
    assert peer.messages == messages  # the peer sees ours, in order
    peer.add_message(HumanMessage("from the peer again"))
    assert history.get_messages(limit=1) == [HumanMessage("from the peer again")]

    history.clear()
    assert peer.messages == []


def test_the_peer_reads_what_we_wrote(make_backend: MakeBackend, redis_url: str,
                                      prefix: str) -> None:
    messages = sample_messages()
    history = ChatHistory("fresh", backend=make_backend(layout="langchain_community"))
    history.add_messages(messages[:3])
    history.add_messages(messages[3:])
    assert _peer("fresh", redis_url, prefix).messages == messages


def test_default_key_prefix_is_the_peers(redis_url: str, raw: redis.Redis,
                                         run_prefix: str) -> None:
    session_id = f"{run_prefix}-default-prefix"
    try:
        RedisChatMessageHistory(session_id, url=redis_url).add_message(AIMessage("hello"))
        backend = RedisBackend.from_options(url=redis_url, layout="langchain_community")
        assert backend.key(session_id) == f"message_store:{session_id}".encode()
        # fetch alone: a ChatHistory would create the collection, which indexes every
        # message_store: key of the shared server (keys this test did not write)
        assert backend.fetch(session_id) == [message_to_dict(AIMessage("hello"))]
        backend.close()
    finally:
        raw.delete(f"message_store:{session_id}")


def test_expiry_is_refreshed_on_the_peers_keys(make_backend: MakeBackend, redis_url: str,
                                               prefix: str, raw: redis.Redis) -> None:
    _peer("s", redis_url, prefix, ttl=100).add_message(HumanMessage("hi"))
    key = f"{prefix}:s"
    raw.pexpire(key, 500)
    make_backend(layout="langchain_community", ttl=100).append(
        "s", [message_to_dict(AIMessage("hello"))])
    assert raw.pttl(key) > 99_000
    assert _peer("s", redis_url, prefix).messages == [HumanMessage("hi"), AIMessage("hello")]


def test_a_value_that_is_not_json_is_an_error(make_backend: MakeBackend, prefix: str,
                                              raw: redis.Redis) -> None:
    from chathistory import ChatHistoryError

    raw.lpush(f"{prefix}:s", b"not json")
    backend = make_backend(layout="langchain_community")
    with pytest.raises(ChatHistoryError, match="not a JSON message"):
        backend.fetch("s")


def test_a_key_of_another_type_is_an_error_not_a_crash(make_backend: MakeBackend, prefix: str,
                                                       raw: redis.Redis) -> None:
    from chathistory import ChatHistoryError

    backend = make_backend()
    raw.set(backend.key("s"), b"a string")
    for call in (lambda: backend.fetch("s"),
                 lambda: backend.append("s", [message_to_dict(HumanMessage("x"))]),
                 lambda: asyncio.run(backend.afetch("s"))):
        with pytest.raises(ChatHistoryError, match="WRONGTYPE"):
            call()
    ttl_backend = make_backend(ttl=10)
    with pytest.raises(ChatHistoryError, match="WRONGTYPE"):
        ttl_backend.append("s", [message_to_dict(HumanMessage("x"))])
    with pytest.raises(ChatHistoryError, match="WRONGTYPE"):
        asyncio.run(ttl_backend.aappend("s", [message_to_dict(HumanMessage("x"))]))
    assert raw.get(backend.key("s")) == b"a string"
    assert backend.fetch("other") == []  # the connection is still good


# What RedisChatMessageHistory accepts (issue 11) --------------------------------------------

@pytest.mark.parametrize("tail", ["@", ":", "::", "@chat:", "a b*?[x]:", "é" * 300 + ":"])
def test_every_prefix_the_peer_takes_works_in_place_both_ways(
        make_backend: MakeBackend, redis_url: str, prefix: str, raw: redis.Redis,
        tail: str) -> None:
    key_prefix = f"{prefix}{tail}"  # this test's own keys, whatever the tail
    peer = RedisChatMessageHistory("s", url=redis_url, key_prefix=key_prefix)
    peer.add_message(HumanMessage("from the peer"))
    backend = make_backend(layout="langchain_community", key_prefix=key_prefix)
    history = ChatHistory("s", backend=backend)
    assert history.messages == [HumanMessage("from the peer")]
    history.add_messages([AIMessage("from us")])
    assert peer.messages == [HumanMessage("from the peer"), AIMessage("from us")]
    assert raw.llen((key_prefix + "s").encode()) == 2
    # Found by the listing too: the peer's session was there before the backend.
    assert [(info.session_id, info.messages) for info in backend.list_sessions()] == [("s", 2)]
    history.clear()
    assert peer.messages == [] and backend.list_sessions() == []


def test_prefixes_of_a_single_character_work_in_place(redis_url: str, raw: redis.Redis,
                                                      run_prefix: str) -> None:
    for key_prefix in ("@", ":"):
        session_id = f"{run_prefix}-one-character"
        backend = RedisBackend.from_options(url=redis_url, layout="langchain_community",
                                            key_prefix=key_prefix)
        try:
            _peer_writes = RedisChatMessageHistory(session_id, url=redis_url,
                                                   key_prefix=key_prefix)
            _peer_writes.add_message(HumanMessage("hi"))
            assert backend.key(session_id) == f"{key_prefix}{session_id}".encode()
            backend.append(session_id, [message_to_dict(AIMessage("hello"))])
            assert _peer_writes.messages == [HumanMessage("hi"), AIMessage("hello")]
            # Indexed (nothing here lists or scans: other keys under so short a prefix are
            # not this test's, and the index's sets vanish with their last entry).
            assert raw.zscore(backend.index_keys[1], session_id) is not None
        finally:
            backend.clear(session_id)  # the key and its index entries
            backend.close()
        assert not raw.exists(f"{key_prefix}{session_id}")
        by_id, by_time = backend.index_keys
        assert raw.zscore(by_id, session_id) is None and raw.zscore(by_time, session_id) is None


@pytest.mark.parametrize("ttl", [0, None])
def test_ttl_0_or_none_means_no_expiry_as_for_the_peer(make_backend: MakeBackend,
                                                       redis_url: str, prefix: str,
                                                       raw: redis.Redis,
                                                       ttl: int | None) -> None:
    peer = _peer("s", redis_url, prefix, ttl=ttl)
    peer.add_message(HumanMessage("hi"))
    backend = make_backend(layout="langchain_community", ttl=ttl)
    backend.append("s", [message_to_dict(AIMessage("hello"))])
    asyncio.run(backend.aappend("s", [message_to_dict(AIMessage("again"))]))
    assert raw.pttl(f"{prefix}:s") == -1  # a key without expiry, as the peer leaves it
    assert peer.messages == [HumanMessage("hi"), AIMessage("hello"), AIMessage("again")]


def test_a_conventional_prefix_in_the_chathistory_layout(make_backend: MakeBackend,
                                                         prefix: str, raw: redis.Redis) -> None:
    backend = make_backend(key_prefix=f"{prefix}:")  # "myapp:" rather than "myapp"
    backend.append("user-42", [message_to_dict(HumanMessage("hi"))])
    assert raw.llen(f"{prefix}:{{user-42}}") == 1
    assert make_backend(key_prefix=prefix).fetch("user-42") == [
        message_to_dict(HumanMessage("hi"))]
