"""Keys: one per session, a hash tag around exactly the session, hostile ids kept apart."""

from __future__ import annotations

import asyncio
import json
from binascii import crc_hqx
from collections.abc import Callable
from urllib.parse import unquote

import pytest
import redis
from chathistory_redis import RedisBackend
from chathistory_redis.keyspace import (
    chathistory_key,
    langchain_community_key,
    session_from_chathistory_key,
    session_ids_of_keys,
)
from redis.crc import key_slot

from chathistory.testing import HOSTILE_SESSION_IDS, numbered_records

MakeBackend = Callable[..., RedisBackend]

SESSION_IDS = [
    *HOSTILE_SESSION_IDS,
    "{", "}", "}{", "{}", "a}b{c", "{user}", "{{nested}}",
    "%", "%25", "%7B", "%7Bx%7D", "{x}",          # look like the encoding of one another
    ":", "::", "a:b", "a:{b}:c",
    "\x00\x01\x7f\xfe\xff binary-ish",
    "b'\\x00\\xff'",
    "lone surrogate \udcff",
    "* ? [a-z] \\",                                  # glob characters of SCAN patterns
    "é" * 50_000,                                    # 100 kB of key
    " ", "\n",
]


def _slot(key: bytes) -> int:
    return crc_hqx(key, 0) % 16384


def _scan(raw: redis.Redis, pattern: bytes) -> set[bytes]:
    """The sessions' keys (lists) matching ``pattern``; the index's sets are left out."""
    return set(raw.scan_iter(match=pattern, count=1000, _type="list"))


def test_session_ids_are_distinct() -> None:
    assert len(set(SESSION_IDS)) == len(SESSION_IDS)


def test_each_hostile_session_stays_in_its_own_key(make_backend: MakeBackend,
                                                   raw: redis.Redis, prefix: str) -> None:
    backend = make_backend()
    for number, session_id in enumerate(SESSION_IDS):
        backend.append(session_id, numbered_records(2, prefix=f"{number}-"))

    keys = _scan(raw, f"{prefix}:*".encode())
    assert len(keys) == len(SESSION_IDS)
    head = f"{prefix}:{{".encode()
    found = {}
    for key in keys:
        assert key.startswith(head) and key.endswith(b"}")
        tag = key[len(head):-1]
        # Redis Cluster hashes what lies between the first "{" and the first "}"
        # after it: that must be the whole session part, so no brace inside it.
        assert b"{" not in tag and b"}" not in tag
        assert key_slot(key) == _slot(tag)  # redis-py's cluster hashing: the tag alone
        session_id = unquote(tag.decode("utf-8", "surrogatepass"), errors="surrogatepass")
        found[session_id] = key
    assert set(found) == set(SESSION_IDS)

    for number, session_id in enumerate(SESSION_IDS):
        assert backend.key(session_id) == found[session_id]
        assert session_from_chathistory_key(prefix, found[session_id]) == session_id
        assert [r["data"]["content"] for r in backend.fetch(session_id)] == [
            f"{number}-0", f"{number}-1"]
        assert raw.llen(found[session_id]) == 2

    cleared = SESSION_IDS[4]  # "{hash}:tag:{}:*"
    backend.clear(cleared)
    assert _scan(raw, f"{prefix}:*".encode()) == keys - {found[cleared]}


def test_async_methods_use_the_same_keys(make_backend: MakeBackend, raw: redis.Redis,
                                         prefix: str) -> None:
    backend = make_backend()

    async def write() -> None:
        for session_id in SESSION_IDS:
            await backend.aappend(session_id, numbered_records(1))

    asyncio.run(write())
    assert _scan(raw, f"{prefix}:*".encode()) == {backend.key(s) for s in SESSION_IDS}


def test_langchain_layout_keys_are_prefix_plus_session(make_backend: MakeBackend,
                                                       raw: redis.Redis, prefix: str) -> None:
    backend = make_backend(layout="langchain_community")
    for session_id in SESSION_IDS:
        backend.append(session_id, numbered_records(1))
    expected = {(f"{prefix}:" + s).encode("utf-8", "surrogatepass") for s in SESSION_IDS}
    assert _scan(raw, f"{prefix}:*".encode()) == expected


def test_the_documented_key_layout(redis_url: str, raw: redis.Redis) -> None:
    assert chathistory_key("chathistory", "user-42") == b"chathistory:{user-42}"
    assert chathistory_key("app", "a{b}%c") == b"app:{a%7Bb%7D%25c}"
    # Not created: creating would index every myapp:{...} key of the shared server.
    backend = RedisBackend.from_options(url=redis_url, key_prefix="myapp")
    try:
        backend.append("user-42", numbered_records(2))
        values = raw.lrange(b"myapp:{user-42}", 0, -1)  # a list, oldest first
        assert [json.loads(value) for value in values] == numbered_records(2)
        assert all(b", " not in value and b'": ' not in value for value in values)  # compact
        assert raw.zscore(b"myapp:sessions:{myapp:}:by-time", "user-42") is not None
    finally:
        backend.clear("user-42")  # its key and its index entries (the index then vanishes)
        backend.close()
    assert not raw.exists(b"myapp:{user-42}", b"myapp:sessions:{myapp:}:by-id")


@pytest.mark.parametrize("session_id", SESSION_IDS[:12])
def test_keys_round_trip(session_id: str) -> None:
    assert session_from_chathistory_key("p", chathistory_key("p", session_id)) == session_id


def _session_of(layout: str, key: bytes) -> str:
    """The id of one key of prefix ``p:``, read as the docs say; ValueError for another key."""
    if layout == "chathistory":
        return session_from_chathistory_key("p:", key)
    if not key.startswith(b"p:"):
        raise ValueError("not a key of this prefix")
    return key[2:].decode("utf-8", "surrogatepass")


@pytest.mark.parametrize("layout", ["chathistory", "langchain_community"])
def test_the_ids_of_many_keys_are_those_of_each_key(layout: str) -> None:
    make = chathistory_key if layout == "chathistory" else langchain_community_key
    keys = [make("p:", session_id) for session_id in SESSION_IDS]
    keys += [b"p:{not utf-8 \xff}", b"p:not utf-8 \xff", b"p:{a{b}", b"p:{a}b}", b"q:{x}",
             b"p:sessions:{p:}:by-id"]
    expected = set()
    for key in keys:
        try:
            expected.add(_session_of(layout, key).encode("utf-8", "surrogatepass"))
        except ValueError:
            continue
    assert session_ids_of_keys(layout, "p:", keys) == expected
    assert {session_id.encode("utf-8", "surrogatepass") for session_id in SESSION_IDS
            } <= expected
    # Without a key that is no UTF-8 or has a brace too much, the quicker path.
    assert session_ids_of_keys(layout, "p:", keys[:len(SESSION_IDS)]) == {
        session_id.encode("utf-8", "surrogatepass") for session_id in SESSION_IDS}
