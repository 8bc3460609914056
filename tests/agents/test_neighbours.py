"""The stored transcript beside each of LangChain's own middleware, placed before and after ours.

Every test compares what the store holds with the exact list of messages the
user sent and the model and tools produced, as logged by the fake model and
the tool themselves, never as read back from the agent's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    ClearToolUsesEdit,
    ContextEditingMiddleware,
    HumanInTheLoopMiddleware,
    ModelCallLimitMiddleware,
    ModelFallbackMiddleware,
    SummarizationMiddleware,
    ToolCallLimitMiddleware,
    ToolRetryMiddleware,
)
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    ToolMessage,
)
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from chathistory.agents import ChatHistoryMiddleware
from chathistory.backends.memory import MemoryBackend
from chathistory.testing.chat_models import ToolCallingFakeModel

Entry = tuple[str, str, tuple[str, ...], str | None]
"""A message as compared here: type, text, its tool calls' ids, the call it answers."""


def entry(message: BaseMessage) -> Entry:
    calls = tuple(call["id"] or "" for call in message.tool_calls) \
        if isinstance(message, AIMessage) else ()
    answers = message.tool_call_id if isinstance(message, ToolMessage) else None
    return (message.type, message.text, calls, answers)


def stored(backend: MemoryBackend, session_id: str) -> list[Entry]:
    from chathistory.records import to_messages
    return [entry(message) for message in to_messages(backend.fetch(session_id))]


class Conversation:
    """A fake model and a weather tool that log, in order, every message they produce.

    ``calls_per_turn`` tool calls are made one after the other before the answer.
    The tool fails on its first call for a city listed in ``flaky``.
    """

    def __init__(self, calls_per_turn: int = 1, flaky: tuple[str, ...] = ()) -> None:
        self.log: list[Entry] = []
        self.calls_per_turn = calls_per_turn
        self.flaky = set(flaky)
        self.model = ToolCallingFakeModel(respond=self.respond)
        self.counter = 0

        @tool
        def get_weather(city: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
            """Today's weather in a city."""
            if city in self.flaky:
                self.flaky.discard(city)
                raise ConnectionError(f"the weather service dropped {city}")
            result = f"sunny in {city}"
            self.log.append(("tool", result, (), tool_call_id))
            return result

        self.tool = get_weather

    def respond(self, messages: list[BaseMessage]) -> AIMessage:
        calls_made = 0
        for message in reversed(messages):
            if isinstance(message, HumanMessage) and message.additional_kwargs.get(
                    "lc_source") != "summarization":
                break
            if isinstance(message, AIMessage) and message.tool_calls:
                calls_made += 1
        question = next(message.text for message in reversed(messages)
                        if isinstance(message, HumanMessage))
        if calls_made < self.calls_per_turn:
            self.counter += 1
            reply = AIMessage("", tool_calls=[{
                "name": "get_weather", "args": {"city": question},
                "id": f"call-{self.counter}", "type": "tool_call"}])
        else:
            reply = AIMessage(f"It is {messages[-1].text}.")
        self.log.append(entry(reply))
        return reply

    def ask(self, text: str) -> dict[str, list[BaseMessage]]:
        self.log.append(("human", text, (), None))
        return {"messages": [HumanMessage(text)]}


ORDERS = ["ours first", "ours last"]


def placed(ours: AgentMiddleware[Any, Any, Any], other: AgentMiddleware[Any, Any, Any],
           order: str) -> list[AgentMiddleware[Any, Any, Any]]:
    return [ours, other] if order == "ours first" else [other, ours]


@pytest.mark.parametrize("order", ORDERS)
def test_beside_summarization_the_transcript_is_whole_and_holds_no_summary(order: str) -> None:
    memory = MemoryBackend()
    talk = Conversation()
    summarizer = ToolCallingFakeModel(respond=lambda messages: AIMessage("the gist"))
    summarization = SummarizationMiddleware(model=summarizer, trigger=("messages", 6),
                                            keep=("messages", 2))
    agent = create_agent(talk.model, [talk.tool],
                         middleware=placed(ChatHistoryMiddleware(memory), summarization, order))
    for city in ["Paris", "Oslo", "Rome"]:
        agent.invoke(talk.ask(city), context={"session_id": "s"})

    assert len(summarizer.prompt_sizes) > 0  # the neighbour did summarize
    assert stored(memory, "s") == talk.log
    assert [text for kind, text, _, _ in stored(memory, "s") if kind == "human"] == [
        "Paris", "Oslo", "Rome"]


@pytest.mark.parametrize("order", ORDERS)
def test_beside_context_editing_the_tool_results_are_stored_as_the_tools_gave_them(
        order: str) -> None:
    memory = MemoryBackend()
    talk = Conversation()
    sent: list[list[BaseMessage]] = []
    respond = talk.respond

    def watching(messages: list[BaseMessage]) -> AIMessage:
        sent.append(messages)
        return respond(messages)

    talk.model.respond = watching
    editing = ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=1, keep=0)])
    agent = create_agent(talk.model, [talk.tool],
                         middleware=placed(ChatHistoryMiddleware(memory), editing, order))
    for city in ["Paris", "Oslo"]:
        agent.invoke(talk.ask(city), context={"session_id": "s"})

    cleared = [message for messages in sent for message in messages
               if isinstance(message, ToolMessage) and "sunny" not in message.text]
    assert cleared  # the model was sent edited tool results
    assert stored(memory, "s") == talk.log


DECISIONS: dict[str, dict[str, Any]] = {
    "approve": {"type": "approve"},
    "edit": {"type": "edit",
             "edited_action": {"name": "get_weather", "args": {"city": "Lyon"}}},
    "reject": {"type": "reject", "message": "not that city"},
}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("decision", sorted(DECISIONS))
def test_beside_human_in_the_loop_each_decision_resumed_stores_the_turn_once(
        order: str, decision: str) -> None:
    memory = MemoryBackend()
    talk = Conversation()
    approval = HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})
    agent = create_agent(talk.model, [talk.tool], checkpointer=InMemorySaver(),
                         middleware=placed(ChatHistoryMiddleware(memory), approval, order))
    config: Any = {"configurable": {"thread_id": "t"}}
    paused = agent.invoke(talk.ask("Paris"), config=config)
    assert "__interrupt__" in paused
    assert memory.fetch("t") == []
    final = agent.invoke(Command(resume={"decisions": [DECISIONS[decision]]}), config=config)

    expected = list(talk.log)
    if decision == "reject":
        # No tool ran: the human's answer to the call is what the model was given.
        answer = next(message for message in final["messages"]
                      if isinstance(message, ToolMessage))
        assert "not that city" in answer.text
        expected.insert(2, entry(answer))
    if decision == "edit":
        # The tool ran the reviewer's call. The result is stored as the model was given
        # it: langchain 1.5 adds a note saying which call ran, 1.3 edits the call instead.
        result = next(message for message in final["messages"]
                      if isinstance(message, ToolMessage))
        assert result.text.endswith("sunny in Lyon")
        expected[1:3] = [entry(final["messages"][1]), entry(result)]
    assert stored(memory, "t") == expected
    assert memory.calls["append"] == 1


@pytest.mark.parametrize("order", ORDERS)
def test_when_the_model_call_limit_ends_the_run_its_notice_is_not_a_turn(order: str) -> None:
    memory = MemoryBackend()
    talk = Conversation()
    limit = ModelCallLimitMiddleware(run_limit=1, exit_behavior="end")
    agent = create_agent(talk.model, [talk.tool],
                         middleware=placed(ChatHistoryMiddleware(memory), limit, order))
    final = agent.invoke(talk.ask("Paris"), context={"session_id": "s"})

    assert final["messages"][-1].type == "ai"  # the limit's notice, in the state
    assert "limit" in final["messages"][-1].text.lower()
    assert stored(memory, "s") == talk.log == [
        ("human", "Paris", (), None), ("ai", "", ("call-1",), None),
        ("tool", "sunny in Paris", (), "call-1")]


@pytest.mark.parametrize("order", ORDERS)
def test_when_the_tool_call_limit_ends_the_run_the_refused_call_keeps_its_answer(
        order: str) -> None:
    memory = MemoryBackend()
    talk = Conversation(calls_per_turn=2)
    limit = ToolCallLimitMiddleware(run_limit=1, exit_behavior="end")
    agent = create_agent(talk.model, [talk.tool],
                         middleware=placed(ChatHistoryMiddleware(memory), limit, order))
    final = agent.invoke(talk.ask("Paris"), context={"session_id": "s"})

    refusal = next(message for message in final["messages"]
                   if isinstance(message, ToolMessage) and message.status == "error")
    assert stored(memory, "s") == [*talk.log, entry(refusal)]
    assert stored(memory, "s")[-1][3] == "call-2"  # the second call, answered by the limit


@pytest.mark.parametrize("order", ORDERS)
def test_beside_model_fallback_only_the_model_that_answered_is_stored(order: str) -> None:
    memory = MemoryBackend()
    talk = Conversation()

    def down(messages: list[BaseMessage]) -> AIMessage:
        raise ConnectionError("the primary model is down")

    primary = ToolCallingFakeModel(respond=down)
    fallback = ModelFallbackMiddleware(talk.model)
    agent = create_agent(primary, [talk.tool],
                         middleware=placed(ChatHistoryMiddleware(memory), fallback, order))
    agent.invoke(talk.ask("Paris"), context={"session_id": "s"})
    assert len(primary.prompt_sizes) == 2  # tried, and failed, for both model calls
    assert stored(memory, "s") == talk.log


@pytest.mark.parametrize("order", ORDERS)
def test_beside_tool_retry_only_the_result_of_the_retry_that_worked_is_stored(
        order: str) -> None:
    memory = MemoryBackend()
    talk = Conversation(flaky=("Paris",))
    retry = ToolRetryMiddleware(max_retries=2, initial_delay=0, jitter=False)
    agent = create_agent(talk.model, [talk.tool],
                         middleware=placed(ChatHistoryMiddleware(memory), retry, order))
    agent.invoke(talk.ask("Paris"), context={"session_id": "s"})
    assert not talk.flaky  # the first try failed
    assert stored(memory, "s") == talk.log


def test_messages_a_tool_removes_are_still_stored_and_stored_ones_stay() -> None:
    memory = MemoryBackend()
    talk = Conversation()
    agent = create_agent(talk.model, [talk.tool], middleware=[ChatHistoryMiddleware(memory)])
    agent.invoke(talk.ask("Paris"), context={"session_id": "s"})
    first_turn = memory.fetch("s")
    stored_id = first_turn[0]["data"]["id"]

    @tool
    def forget(tool_call_id: Annotated[str, InjectedToolCallId],
               state: Annotated[dict[str, Any], "state"] | None = None) -> Command[Any]:
        """Forget the conversation so far."""
        return Command(update={"messages": [
            RemoveMessage(id=stored_id),
            ToolMessage("forgotten", tool_call_id=tool_call_id)]})

    def respond(messages: list[BaseMessage]) -> AIMessage:
        if isinstance(messages[-1], ToolMessage):
            reply = AIMessage("Done.")
        else:
            reply = AIMessage("", tool_calls=[{"name": "forget", "args": {},
                                               "id": "call-forget", "type": "tool_call"}])
        talk.log.append(entry(reply))
        return reply

    model = ToolCallingFakeModel(respond=respond)
    forgetting = create_agent(model, [forget], middleware=[ChatHistoryMiddleware(memory)])
    final = forgetting.invoke(talk.ask("Forget it"), context={"session_id": "s"})
    assert stored_id not in {message.id for message in final["messages"]}

    talk.log.insert(len(talk.log) - 1, ("tool", "forgotten", (), "call-forget"))
    assert stored(memory, "s") == talk.log
    ids = [record["data"]["id"] for record in memory.fetch("s")]
    assert ids.count(stored_id) == 1
    # The store is the transcript: the next run loads the removed message again.
    model.prompt_sizes.clear()
    forgetting.invoke(talk.ask("Again"), context={"session_id": "s"})
    assert model.prompt_sizes[0] == len(ids) + 1


def test_a_command_that_removes_a_message_of_this_run_still_stores_it() -> None:
    memory = MemoryBackend()
    log: list[Entry] = []

    @tool
    def tidy(tool_call_id: Annotated[str, InjectedToolCallId]) -> Command[Any]:
        """Remove the question from the context."""
        return Command(update={"messages": [
            RemoveMessage(id="question-1"),
            ToolMessage("tidied", tool_call_id=tool_call_id)]})

    def respond(messages: list[BaseMessage]) -> AIMessage:
        reply = (AIMessage("Tidied.") if isinstance(messages[-1], ToolMessage)
                 else AIMessage("", tool_calls=[{"name": "tidy", "args": {},
                                                 "id": "call-tidy", "type": "tool_call"}]))
        log.append(entry(reply))
        return reply

    agent = create_agent(ToolCallingFakeModel(respond=respond), [tidy],
                         middleware=[ChatHistoryMiddleware(memory)])
    final = agent.invoke({"messages": [HumanMessage("Tidy up", id="question-1")]},
                         context={"session_id": "s"})
    assert "question-1" not in {message.id for message in final["messages"]}
    assert stored(memory, "s") == [("human", "Tidy up", (), None), log[0],
                                   ("tool", "tidied", (), "call-tidy"), log[1]]


def test_beside_summarization_async_the_transcript_is_whole() -> None:
    memory = MemoryBackend()
    talk = Conversation()
    summarizer = ToolCallingFakeModel(respond=lambda messages: AIMessage("the gist"))
    summarization = SummarizationMiddleware(model=summarizer, trigger=("messages", 6),
                                            keep=("messages", 2))
    agent = create_agent(talk.model, [talk.tool],
                         middleware=[summarization, ChatHistoryMiddleware(memory)])

    async def conversation() -> None:
        for city in ["Paris", "Oslo", "Rome"]:
            await agent.ainvoke(talk.ask(city), context={"session_id": "s"})

    asyncio.run(conversation())
    assert len(summarizer.prompt_sizes) > 0
    assert stored(memory, "s") == talk.log


Run = Callable[..., Any]
