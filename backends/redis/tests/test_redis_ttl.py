"""``ttl``: a session expires whole, ``ttl`` seconds after its last write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from chathistory_redis import RedisBackend

from chathistory import ConfigError
from chathistory.testing import numbered_records

MakeBackend = Callable[..., RedisBackend]
WaitUntil = Callable[..., None]


def _contents(records: list[dict]) -> list[str]:
    return [record["data"]["content"] for record in records]


def test_appends_keep_a_session_alive_then_it_expires_whole(
    make_backend: MakeBackend, raw: redis.Redis, wait_until: WaitUntil
) -> None:
    # Both layouts side by side, so the waits are paid once.
    backends = [make_backend(ttl=1), make_backend(ttl=1, layout="langchain_community")]
    for backend in backends:
        backend.append("s", numbered_records(2))
        raw.pexpire(backend.key("s"), 300)  # as if most of the second had passed
        backend.append("s", numbered_records(1, prefix="late"))
        # The late write gave the whole session, old messages and new, a full second again.
        assert 900 < raw.pttl(backend.key("s")) <= 1000
    seen: dict[bytes, set[tuple[str, ...]]] = {backend.key("s"): set() for backend in backends}

    def all_gone() -> bool:
        for backend in backends:
            seen[backend.key("s")].add(tuple(_contents(backend.fetch("s"))))
        return not any(raw.exists(backend.key("s")) for backend in backends)

    wait_until(all_gone, "both sessions have expired")
    for backend in backends:
        # Until it expired, each read saw the whole session; then nothing of it.
        assert seen[backend.key("s")] <= {("m0", "m1", "late0"), ()}
        assert backend.fetch("s") == []


@pytest.mark.parametrize("layout", ["chathistory", "langchain_community"])
def test_every_append_restarts_the_expiry_sync_and_async(
    make_backend: MakeBackend, raw: redis.Redis, layout: str
) -> None:
    backend = make_backend(ttl=100, layout=layout)
    key = backend.key("s")
    backend.append("s", numbered_records(1))
    assert 99_000 < raw.pttl(key) <= 100_000
    raw.pexpire(key, 500)
    backend.append("s", numbered_records(1, prefix="sync"))
    assert 99_000 < raw.pttl(key) <= 100_000
    raw.pexpire(key, 500)
    asyncio.run(backend.aappend("s", numbered_records(1, prefix="async")))
    assert 99_000 < raw.pttl(key) <= 100_000
    assert _contents(backend.fetch("s")) == ["m0", "sync0", "async0"]


def test_reads_do_not_extend_a_session(make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend(ttl=100)
    backend.append("s", numbered_records(3))
    raw.pexpire(backend.key("s"), 5000)
    backend.fetch("s")
    backend.fetch("s", limit=1)
    asyncio.run(backend.afetch("s"))
    assert 0 < raw.pttl(backend.key("s")) <= 5000


def test_each_session_has_its_own_expiry(make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend(ttl=100)
    backend.append("a", numbered_records(1))
    backend.append("b", numbered_records(1))
    raw.pexpire(backend.key("a"), 500)
    backend.append("b", numbered_records(1))
    assert 0 < raw.pttl(backend.key("a")) <= 500
    assert raw.pttl(backend.key("b")) > 99_000


def test_without_ttl_sessions_never_expire(make_backend: MakeBackend, raw: redis.Redis) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1))
    asyncio.run(backend.aappend("s", numbered_records(1)))
    assert raw.pttl(backend.key("s")) == -1  # a key without expiry


@pytest.mark.parametrize("ttl", [0, -5, 1.5, "60", True])
def test_ttl_must_be_a_positive_whole_number_of_seconds(ttl: object) -> None:
    with pytest.raises(ConfigError, match="'ttl'"):
        RedisBackend.from_options(ttl=ttl)
