"""Credentials against a server that requires them.

The module starts a private server with a password and an ACL user allowed to
read only, and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from chathistory_redis import RedisBackend

from chathistory import PermissionDeniedError
from chathistory.testing import numbered_records

if TYPE_CHECKING:
    from conftest import PrivateRedis, StartRedisServer

PASSWORD = "Adm1n-s3cr3t"
READER_PASSWORD = "R3ader-s3cr3t"


@pytest.fixture(scope="module")
def server(start_redis_server: StartRedisServer) -> Iterator[PrivateRedis]:
    server = start_redis_server(password=PASSWORD)
    with server.client() as admin:
        admin.acl_setuser("reader", enabled=True, passwords=[f"+{READER_PASSWORD}"],
                          keys=["*"], commands=["+@read", "+@connection"])
    yield server
    server.remove()


@pytest.fixture
def port(server: PrivateRedis) -> int:
    return server.port


def _connections_received(server: PrivateRedis) -> int:
    with server.client() as admin:
        return int(admin.info("stats")["total_connections_received"])


def _calls(backend: RedisBackend) -> list[Callable[[], object]]:
    return [lambda: backend.fetch("s"),
            lambda: backend.append("s", numbered_records(1)),
            lambda: backend.clear("s"),
            lambda: asyncio.run(backend.afetch("s")),
            lambda: asyncio.run(backend.aappend("s", numbered_records(1)))]


def test_the_right_password_works(port: int) -> None:
    backend = RedisBackend.from_options(url=f"redis://:{PASSWORD}@127.0.0.1:{port}/0", ttl=60)
    backend.append("s", numbered_records(2))
    assert asyncio.run(backend.afetch("s")) == numbered_records(2)
    backend.clear("s")
    backend.close()


@pytest.mark.parametrize("credentials", ["", ":wrong-Pa55@", "nobody:wrong-Pa55@"])
def test_missing_or_wrong_credentials_are_refused_at_once(server: PrivateRedis,
                                                          credentials: str) -> None:
    backend = RedisBackend.from_options(url=f"redis://{credentials}127.0.0.1:{server.port}/0")
    calls = _calls(backend)
    before = _connections_received(server)
    for call in calls:
        with pytest.raises(PermissionDeniedError, match=f"127.0.0.1:{server.port}") as caught:
            call()
        assert "Pa55" not in "".join(traceback.format_exception(caught.value))
    # Not retried: one connection tried per call (and one to read the count).
    assert _connections_received(server) - before == len(calls) + 1
    backend.close()


def test_a_user_without_the_right_to_write_is_refused(port: int) -> None:
    backend = RedisBackend.from_options(
        url=f"redis://reader:{READER_PASSWORD}@127.0.0.1:{port}/0")
    assert backend.fetch("s") == []  # reading is allowed
    for call in (lambda: backend.append("s", numbered_records(1)),
                 lambda: asyncio.run(backend.aappend("s", numbered_records(1))),
                 lambda: backend.clear("s")):
        with pytest.raises(PermissionDeniedError) as caught:
            call()
        assert READER_PASSWORD not in "".join(traceback.format_exception(caught.value))
    backend.close()
