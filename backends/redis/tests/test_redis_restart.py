"""The server is restarted in the middle of a run: calls fail cleanly, then recover.

These tests stop and start the local server (127.0.0.1:6379, no persistence),
as ``.ci/run`` does, and always leave it running. They skip when the test
server is not one they can restart.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from chathistory_redis import RedisBackend
from langchain_core.messages import HumanMessage

from chathistory import BackendUnavailableError, ChatHistory
from chathistory.testing.samples import numbered_records

MakeBackend = Callable[..., RedisBackend]
PORT = "6379"
START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", PORT,
         "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
         "--logfile", "/var/log/redis/ci.log"]


def _answers() -> bool:
    done = subprocess.run(["redis-cli", "-p", PORT, "ping"], capture_output=True, text=True)
    return done.stdout.strip() == "PONG"


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


@dataclass
class Server:
    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", PORT, "shutdown", "nosave"], capture_output=True)
        _wait_until(lambda: not _answers(), "the server stopped")

    def start(self) -> None:
        if not _answers():
            subprocess.run(START, check=True, capture_output=True)
        _wait_until(_answers, "the server answers PING")


@pytest.fixture
def server(redis_url: str) -> Iterator[Server]:
    parts = urlsplit(redis_url)
    if (parts.hostname, parts.port or 6379) not in {("127.0.0.1", 6379), ("localhost", 6379)}:
        pytest.skip(f"restarts only the local server on port {PORT}, not the one under test")
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        pytest.skip("redis-server and redis-cli are needed to restart the server")
    server = Server()
    try:
        yield server
    finally:
        server.start()


def test_calls_fail_while_the_server_is_down_and_succeed_once_it_is_back(
    make_backend: MakeBackend, server: Server
) -> None:
    backend = make_backend(ttl=600)
    down = [lambda: backend.fetch("s"), lambda: backend.append("s", numbered_records(1)),
            lambda: backend.clear("s")]

    async def scenario() -> None:
        # Both pools hold a connection to the server that is about to go.
        await backend.aappend("s", numbered_records(1))
        backend.append("s", numbered_records(1))
        await asyncio.to_thread(server.stop)
        for call in down:
            with pytest.raises(BackendUnavailableError, match=re.escape("127.0.0.1:6379")):
                call()
        for acall in (lambda: backend.afetch("s"), lambda: backend.aclear("s"),
                      lambda: backend.aappend("s", numbered_records(1))):
            with pytest.raises(BackendUnavailableError, match=re.escape("127.0.0.1:6379")):
                await acall()
        await asyncio.to_thread(server.start)
        # The very next calls succeed, on the same backend and the same event loop.
        backend.append("s", numbered_records(1, prefix="sync"))
        await backend.aappend("s", numbered_records(1, prefix="async"))
        assert [r["data"]["content"] for r in await backend.afetch("s")] == ["sync0", "async0"]
        assert [r["data"]["content"] for r in backend.fetch("s", limit=1)] == ["async0"]

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 15


@dataclass
class Writer:
    """Appends numbered two-message batches until told to stop, noting how each one went."""

    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    ok: list[tuple[int, float]] = field(default_factory=list)  # (batch, when it was started)
    failed: list[BaseException] = field(default_factory=list)

    def batch(self, number: int) -> list[HumanMessage]:
        return [HumanMessage(f"{self.name}-{number}-{part}") for part in range(2)]


def _write_sync(history: ChatHistory, writer: Writer) -> None:
    number = 0
    while not writer.stop.is_set():
        started = time.monotonic()
        try:
            history.add_messages(writer.batch(number))
            writer.ok.append((number, started))
        except Exception as exc:
            writer.failed.append(exc)
        number += 1
        time.sleep(0.005)


def _write_async(history: ChatHistory, writer: Writer) -> None:
    async def loop() -> None:
        number = 0
        while not writer.stop.is_set():
            started = time.monotonic()
            try:
                await history.aadd_messages(writer.batch(number))
                writer.ok.append((number, started))
            except Exception as exc:
                writer.failed.append(exc)
            number += 1
            await asyncio.sleep(0.005)

    asyncio.run(loop())


def test_writers_survive_a_restart_mid_run(make_backend: MakeBackend, server: Server) -> None:
    backend = make_backend()
    started = time.monotonic()
    runs = [(Writer("sync"), _write_sync), (Writer("async"), _write_async)]
    threads = [threading.Thread(target=target, args=(ChatHistory(writer.name, backend=backend),
                                                     writer))
               for writer, target in runs]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    server.stop()
    time.sleep(0.5)
    server.start()
    back_up = time.monotonic()
    time.sleep(0.5)
    for writer, _ in runs:
        writer.stop.set()
    for thread in threads:
        thread.join(10)

    for writer, _ in runs:
        assert writer.failed, f"{writer.name}: no call failed while the server was down"
        assert all(isinstance(error, BackendUnavailableError) for error in writer.failed), \
            writer.failed
        after = [number for number, when in writer.ok if when > back_up]
        assert len(after) > 5, f"{writer.name}: calls did not recover"
        contents = [m.content for m in ChatHistory(writer.name, backend=backend).messages]
        stored = [int(text.split("-")[1]) for text in contents[::2]]
        # Whole batches only, each once, in order; every batch sent since the restart is
        # there, and nothing that reported failure is (what was stored before the
        # restart went with the server, which keeps nothing on disk).
        assert contents == [text for number in stored
                            for text in (f"{writer.name}-{number}-0", f"{writer.name}-{number}-1")]
        assert stored == sorted(set(stored))
        assert set(after) <= set(stored) <= {number for number, _ in writer.ok}
    assert time.monotonic() - started < 15
