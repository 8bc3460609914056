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
        assert ChatHistory(session_id, backend=backend).messages == [AIMessage("hello")]
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
