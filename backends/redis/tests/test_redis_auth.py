"""Credentials against a real server that requires them.

The module starts a Redis server of its own with a password and an ACL user
allowed to read only (free local port, no persistence) and stops it afterwards.
It skips if ``redis-server`` is not installed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator

import pytest
import redis
from chathistory_redis import RedisBackend

from chathistory import PermissionDeniedError
from chathistory.testing.samples import numbered_records

PASSWORD = "Adm1n-s3cr3t"
READER_PASSWORD = "R3ader-s3cr3t"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is needed to start a server with a password")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    directory = tmp_path_factory.mktemp("redis-auth")
    server = subprocess.Popen(
        ["redis-server", "--port", str(free), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--requirepass", PASSWORD,
         "--logfile", str(directory / "log")])
    try:
        admin = redis.Redis(port=free, password=PASSWORD)
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.skip("the password-protected test server did not start")
                time.sleep(0.02)
        admin.acl_setuser("reader", enabled=True, passwords=[f"+{READER_PASSWORD}"],
                          keys=["*"], commands=["+@read", "+@connection"])
        admin.close()
        yield free
    finally:
        server.terminate()
        server.wait(10)


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
def test_missing_or_wrong_credentials_are_refused_at_once(port: int, credentials: str) -> None:
    backend = RedisBackend.from_options(url=f"redis://{credentials}127.0.0.1:{port}/0")
    started = time.perf_counter()
    for call in _calls(backend):
        with pytest.raises(PermissionDeniedError, match=f"127.0.0.1:{port}") as caught:
            call()
        assert "Pa55" not in "".join(traceback.format_exception(caught.value))
    assert time.perf_counter() - started < 2  # not retried
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
