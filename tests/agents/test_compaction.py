"""Compaction: the model sees a summary of what is older than the window; the store keeps all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage

from chathistory import ChatHistory
from chathistory.agents import ChatHistoryMiddleware
from chathistory.backends.memory import MemoryBackend
from chathistory.compaction import Summary, summary_session_id
from chathistory.testing.chat_models import ToolCallingFakeModel


class CountingSummarizer:
    """A fake summarizer: counts its calls and names the messages it was given."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.model = ToolCallingFakeModel(respond=self.respond)

    def respond(self, messages: list[BaseMessage]) -> AIMessage:
        request = messages[-1].text
        self.calls.append(request)
        return AIMessage(f"summary {len(self.calls)}: {request.count(chr(10))} lines")


@pytest.fixture
def summarizer() -> CountingSummarizer:
    return CountingSummarizer()


def converse(agents: Any, middleware: ChatHistoryMiddleware, turns: int
             ) -> list[list[BaseMessage]]:
    model, prompts = agents.watched_model()
    agent = agents.build(middleware, model)
    for number in range(turns):
        agent.invoke(agents.ask(f"city{number}"), context={"session_id": "s"})
    return prompts


def test_the_model_sees_a_summary_and_the_store_keeps_every_message(
        agents: Any, summarizer: CountingSummarizer) -> None:
    memory = MemoryBackend()
    middleware = ChatHistoryMiddleware(memory, window=8, summarizer=summarizer.model,
                                       summarize_every=8)
    prompts = converse(agents, middleware, 30)

    # The store holds the whole transcript, and no summary is a turn of it.
    stored = ChatHistory("s", backend=memory).messages
    assert len(stored) == 30 * 4
    assert [message.text for message in stored if message.type == "human"] == [
        f"city{number}" for number in range(30)]
    assert not any(isinstance(message, SystemMessage) for message in stored)

    # At most one summary per 8 messages that left the window.
    older = 30 * 4 - 8
    assert 1 <= len(summarizer.calls) <= older // 8
    summaries = [Summary.from_record(record)
                 for record in memory.fetch(summary_session_id("s"))]
    assert len(summaries) == len(summarizer.calls)
    covers = [summary.covers for summary in summaries if summary is not None]
    assert covers == sorted(covers) and covers[-1] <= older

    # Each prompt: the summary as system text, then at most window + every messages.
    last = prompts[-2]  # the last turn's first model call: summary, history, question
    assert isinstance(last[0], SystemMessage)
    assert f"summary {len(summarizer.calls)}:" in last[0].text
    history = last[1:-1]
    assert 8 <= len(history) < 8 + 8
    assert history[0].type == "human"
    assert not any("summary" in message.text for message in last[1:])


def test_summaries_are_recomputed_only_as_the_older_part_grows(
        agents: Any, summarizer: CountingSummarizer) -> None:
    memory = MemoryBackend()
    middleware = ChatHistoryMiddleware(memory, window=8, summarizer=summarizer.model,
                                       summarize_every=16)
    calls_after_each_turn = []
    for _ in range(16):
        converse(agents, middleware, 1)
        calls_after_each_turn.append(len(summarizer.calls))
    # A run loads before it adds its 4 messages. The first summary comes when 16
    # messages are older than the window (24 stored, the 7th run), the next when
    # 16 more have left it (40 stored, the 11th), then at 56 (the 15th).
    assert calls_after_each_turn == [0] * 6 + [1] * 4 + [2] * 4 + [3] * 2
    summaries = [Summary.from_record(record)
                 for record in memory.fetch(summary_session_id("s"))]
    assert [summary.covers for summary in summaries if summary] == [16, 32, 48]


def test_a_summary_folds_in_the_previous_one(agents: Any, summarizer: CountingSummarizer
                                            ) -> None:
    memory = MemoryBackend()
    middleware = ChatHistoryMiddleware(memory, window=4, summarizer=summarizer.model,
                                       summarize_every=4)
    converse(agents, middleware, 6)
    assert len(summarizer.calls) >= 2
    assert "The summary so far:\nsummary 1:" in summarizer.calls[1]


def test_a_session_stored_before_compaction_is_summarized_from_its_start(
        agents: Any, summarizer: CountingSummarizer) -> None:
    memory = MemoryBackend()
    converse(agents, ChatHistoryMiddleware(memory), 10)  # 40 messages, no summaries
    middleware = ChatHistoryMiddleware(memory, window=8, summarizer=summarizer.model,
                                       summarize_every=8)
    prompts = converse(agents, middleware, 1)
    assert len(summarizer.calls) == 1
    assert "city0" in summarizer.calls[0]
    assert len(prompts[0]) - 2 <= 8 + 8
    summary = Summary.from_record(memory.fetch(summary_session_id("s"))[-1])
    assert summary is not None and summary.covers >= 40 - 8 - 8


def test_compaction_needs_a_window_and_a_sensible_every() -> None:
    model = CountingSummarizer().model
    with pytest.raises(ValueError, match="needs a window"):
        ChatHistoryMiddleware(MemoryBackend(), summarizer=model)
    with pytest.raises(ValueError, match="summarize_every must be an int >= 1"):
        ChatHistoryMiddleware(MemoryBackend(), window=4, summarizer=model, summarize_every=0)
    # A model's name was taken, and failed with an AttributeError at the first summary,
    # turns after the middleware was built.
    with pytest.raises(TypeError, match=r"^summarizer must be a chat model .* not str$"):
        ChatHistoryMiddleware(MemoryBackend(), window=4,
                              summarizer="gpt-4o")  # type: ignore[arg-type]
    ChatHistoryMiddleware(MemoryBackend(), window=4, summarizer=model.with_retry())  # type: ignore[arg-type]


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        yield detector


def test_compaction_async_blocks_nothing(agents: Any, summarizer: CountingSummarizer,
                                         blockbuster: BlockBuster) -> None:
    memory = MemoryBackend()
    middleware = ChatHistoryMiddleware(memory, window=8, summarizer=summarizer.model,
                                       summarize_every=8)
    agent = agents.build(middleware)

    async def conversation() -> None:
        for number in range(10):
            await agent.ainvoke(agents.ask(f"city{number}"), context={"session_id": "s"})

    asyncio.run(conversation())
    assert len(memory.fetch("s")) == 40
    assert 1 <= len(summarizer.calls) <= (40 - 8) // 8


def test_erasing_an_owner_erases_their_summaries_too(
        agents: Any, summarizer: CountingSummarizer) -> None:
    from chathistory import erase

    memory = MemoryBackend()
    middleware = ChatHistoryMiddleware(memory, window=4, summarizer=summarizer.model,
                                       summarize_every=4)
    agent = agents.build(middleware)
    for number in range(4):
        for user in ("alice", "bob"):
            agent.invoke(agents.ask(f"city{number}"),
                         context={"session_id": f"{user}-chat", "user_id": user})
    assert memory.fetch(summary_session_id("alice-chat"))
    receipt = erase(memory, owner="alice")
    assert memory.fetch("alice-chat") == [] == memory.fetch(summary_session_id("alice-chat"))
    assert receipt.sessions == 2  # the conversation and its summaries
    assert len(memory.fetch("bob-chat")) == 16 and memory.fetch(summary_session_id("bob-chat"))


def test_a_uuid_session_keeps_its_summaries_in_a_uuid_session() -> None:
    import uuid

    session_id = str(uuid.uuid4())
    derived = summary_session_id(session_id)
    assert str(uuid.UUID(derived)) == derived != session_id
    assert summary_session_id(session_id.upper()) == derived  # the same UUID, however written
    assert summary_session_id("user-42") == "user-42~summary"
