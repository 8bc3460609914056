"""The middleware gives a new session its owner (context ``user_id``) and a title."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from chathistory.agents import ChatHistoryMiddleware, first_human_title
from chathistory.backends.memory import MemoryBackend


def summary(memory: MemoryBackend, session_id: str) -> Any:
    return memory.session_summaries([session_id])[session_id]


def test_the_first_write_sets_the_owner_from_the_context(agents: Any) -> None:
    memory = MemoryBackend()
    agent = agents.build(ChatHistoryMiddleware(memory))
    agent.invoke(agents.ask("Paris"), context={"session_id": "s", "user_id": "alice"})
    assert summary(memory, "s").owner == "alice"
    assert summary(memory, "s").messages == 4
    # Later runs leave the owner as it is.
    agent.invoke(agents.ask("Rome"), context={"session_id": "s", "user_id": "mallory"})
    assert summary(memory, "s").owner == "alice"
    assert summary(memory, "s").messages == 8


@dataclass
class AppContext:
    session_id: str
    user_id: str


def test_the_owner_comes_from_a_context_schema_and_async_runs(agents: Any) -> None:
    memory = MemoryBackend()
    agent = agents.build(ChatHistoryMiddleware(memory), context_schema=AppContext)
    asyncio.run(agent.ainvoke(agents.ask("Paris"),
                              context=AppContext(session_id="s", user_id="bob")))
    assert summary(memory, "s").owner == "bob"


def test_a_run_without_a_user_id_sets_no_owner(agents: Any) -> None:
    memory = MemoryBackend()
    agents.build(ChatHistoryMiddleware(memory)).invoke(agents.ask("Paris"),
                                                        context={"session_id": "s"})
    assert summary(memory, "s").owner is None


def test_a_title_from_the_first_human_message(agents: Any) -> None:
    memory = MemoryBackend()
    agent = agents.build(ChatHistoryMiddleware(memory, title=True))
    agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    agent.invoke(agents.ask("Rome"), context={"session_id": "s"})
    assert summary(memory, "s").title == "Paris"


def test_a_title_from_the_applications_function(agents: Any) -> None:
    memory = MemoryBackend()
    seen: list[int] = []

    def titled(messages: Sequence[BaseMessage]) -> str:
        seen.append(len(messages))
        return f"Weather in {messages[0].text}"

    agent = agents.build(ChatHistoryMiddleware(memory, title=titled))
    agent.invoke(agents.ask("Oslo"), context={"session_id": "s", "user_id": "ada"})
    agent.invoke(agents.ask("Rome"), context={"session_id": "s"})
    assert summary(memory, "s").title == "Weather in Oslo"
    assert seen == [4]  # called once, with the first run's transcript


def test_a_title_is_one_line_cut_at_a_word() -> None:
    long = HumanMessage("Plan   a trip\nthrough " + "the fjords of Norway " * 10)
    title = first_human_title([long])
    assert title is not None and len(title) <= 80 and "\n" not in title
    assert title.startswith("Plan a trip through the fjords")
    assert title.endswith("\u2026") and not title[:-1].endswith(" ")
    assert first_human_title([HumanMessage("  ")]) is None
