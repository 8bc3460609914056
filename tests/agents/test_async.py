"""The middleware's async path: native async backend calls, and nothing blocks the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from blockbuster import BlockBuster, BlockingError, blockbuster_ctx

from chathistory import ChatHistory, to_records
from chathistory.agents import ChatHistoryMiddleware
from chathistory.backends.memory import MemoryBackend


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail a test whose event loop makes a blocking call, as langchain-core's tests do."""
    with blockbuster_ctx() as detector:
        yield detector


class AsyncOnly(MemoryBackend):
    """A memory backend whose sync methods must not be called."""

    def create_collection(self) -> None:
        raise AssertionError("the async path called create_collection")

    def append(self, session_id: str, records: Any) -> None:
        raise AssertionError("the async path called append")

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        raise AssertionError("the async path called fetch")


def test_ainvoke_uses_the_backends_async_methods(agents: Any, turn_kinds: Any) -> None:
    backend = AsyncOnly()
    model = agents.model()
    agent = agents.build(ChatHistoryMiddleware(backend), model)

    async def conversation() -> None:
        for city in ["Paris", "Rome"]:
            await agent.ainvoke(agents.ask(city), context={"session_id": "s"})

    asyncio.run(conversation())
    assert model.prompt_sizes == [1, 3, 5, 7]
    assert agents.kinds(asyncio.run(backend.afetch("s"))) == turn_kinds(2)


def test_astream_stores_each_turn_once(agents: Any, turn_kinds: Any) -> None:
    backend = MemoryBackend()
    agent = agents.build(ChatHistoryMiddleware(backend))

    async def conversation() -> list[Any]:
        chunks = []
        for city in ["Paris", "Rome"]:
            async for chunk in agent.astream(agents.ask(city), context={"session_id": "s"},
                                             stream_mode="messages"):
                chunks.append(chunk)
        return chunks

    tokens = [message.text for message, _ in asyncio.run(conversation())]
    assert "It " in tokens  # the answer came token by token
    assert agents.kinds(backend.fetch("s")) == turn_kinds(2)
    assert backend.calls["append"] == 2


def test_a_named_sqlite_backend_is_built_and_used_off_the_loop(
        sqlite_path: str, agents: Any, turn_kinds: Any) -> None:
    middleware = ChatHistoryMiddleware("sqlite", path=sqlite_path, window=8)
    agent = agents.build(middleware)

    async def conversation() -> None:
        for city in ["Paris", "Rome", "Oslo"]:
            await agent.ainvoke(agents.ask(city), context={"session_id": "s"})
        async for _ in agent.astream(agents.ask("Bern"), context={"session_id": "s"}):
            pass
        await middleware.aclose()

    asyncio.run(conversation())
    with ChatHistory("s", backend="sqlite", path=sqlite_path) as history:
        assert agents.kinds(to_records(history.get_messages())) == turn_kinds(4)


def test_the_sync_stream_works_too(agents: Any, turn_kinds: Any) -> None:
    backend = MemoryBackend()
    agent = agents.build(ChatHistoryMiddleware(backend))
    updates = list(agent.stream(agents.ask("Paris"), context={"session_id": "s"}))
    assert updates
    assert agents.kinds(backend.fetch("s")) == turn_kinds(1)


class BlocksTheLoop(MemoryBackend):
    async def afetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        time.sleep(0.001)
        return await super().afetch(session_id, limit=limit)


def test_the_detector_fails_a_backend_that_blocks_the_loop(agents: Any) -> None:
    agent = agents.build(ChatHistoryMiddleware(BlocksTheLoop()))
    with pytest.raises(BlockingError):
        asyncio.run(agent.ainvoke(agents.ask("Paris"), context={"session_id": "s"}))
