"""The server is restarted in the middle of a run: calls fail cleanly, then recover.

Each test restarts a private server of its own (``redis_server`` in conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from chathistory_redis import RedisBackend
from langchain_core.messages import HumanMessage

from chathistory import BackendUnavailableError, ChatHistory
from chathistory.testing import numbered_records

if TYPE_CHECKING:
    from conftest import PrivateRedis

WaitUntil = Callable[..., None]


def test_calls_fail_while_the_server_is_down_and_succeed_once_it_is_back(
    redis_server: PrivateRedis
) -> None:
    backend = RedisBackend.from_options(url=redis_server.url, ttl=600)
    where = re.escape(f"127.0.0.1:{redis_server.port}")
    down: list[Callable[[], object]] = [
        lambda: backend.fetch("s"), lambda: backend.append("s", numbered_records(1)),
        lambda: backend.clear("s")]

    async def scenario() -> None:
        # Both pools hold a connection to the server that is about to go.
        await backend.aappend("s", numbered_records(1))
        backend.append("s", numbered_records(1))
        await asyncio.to_thread(redis_server.stop)
        for call in down:
            with pytest.raises(BackendUnavailableError, match=where):
                call()
        for acall in (lambda: backend.afetch("s"), lambda: backend.aclear("s"),
                      lambda: backend.aappend("s", numbered_records(1))):
            with pytest.raises(BackendUnavailableError, match=where):
                await acall()
        await asyncio.to_thread(redis_server.start)
        # The very next calls succeed, on the same backend and the same event loop.
        backend.append("s", numbered_records(1, prefix="sync"))
        await backend.aappend("s", numbered_records(1, prefix="async"))
        assert [r["data"]["content"] for r in await backend.afetch("s")] == ["sync0", "async0"]
        assert [r["data"]["content"] for r in backend.fetch("s", limit=1)] == ["async0"]
        await backend.aclose()

    asyncio.run(scenario())


@dataclass
class Writer:
    """Appends numbered two-message batches until told to stop, noting how each one went."""

    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    ok: list[tuple[int, float]] = field(default_factory=list)  # (batch, when it was started)
    failed: list[BaseException] = field(default_factory=list)

    def batch(self, number: int) -> list[HumanMessage]:
        return [HumanMessage(f"{self.name}-{number}-{part}") for part in range(2)]

    def ok_since(self, moment: float) -> list[int]:
        return [number for number, started in list(self.ok) if started > moment]


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
        writer.stop.wait(0.005)  # a writer's pace, not a wait for anything


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
            await asyncio.sleep(0.005)  # a writer's pace

    asyncio.run(loop())


def test_writers_survive_a_restart_mid_run(redis_server: PrivateRedis,
                                           wait_until: WaitUntil) -> None:
    backend = RedisBackend.from_options(url=redis_server.url)
    runs = [(Writer("sync"), _write_sync), (Writer("async"), _write_async)]
    threads = [threading.Thread(target=target, args=(ChatHistory(writer.name, backend=backend),
                                                     writer))
               for writer, target in runs]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(len(writer.ok) >= 5 for writer, _ in runs), "writers run")
        redis_server.stop()
        wait_until(lambda: all(writer.failed for writer, _ in runs),
                   "every writer has seen the server down")
        redis_server.start()
        back_up = time.monotonic()
        wait_until(lambda: all(len(writer.ok_since(back_up)) > 5 for writer, _ in runs),
                   "every writer has recovered")
    finally:
        for writer, _ in runs:
            writer.stop.set()
        for thread in threads:
            thread.join(30)

    for writer, _ in runs:
        assert all(isinstance(error, BackendUnavailableError) for error in writer.failed), \
            writer.failed
        contents = [m.content for m in ChatHistory(writer.name, backend=backend).messages]
        stored = [int(str(text).split("-")[1]) for text in contents[::2]]
        # Whole batches only, each once, in order; every batch sent since the restart is
        # there, and nothing that reported failure is (what was stored before the
        # restart went with the server, which keeps nothing on disk).
        assert contents == [text for number in stored
                            for text in (f"{writer.name}-{number}-0", f"{writer.name}-{number}-1")]
        assert stored == sorted(set(stored))
        assert set(writer.ok_since(back_up)) <= set(stored) <= {number for number, _ in writer.ok}
    backend.close()
