"""ChatHistoryMiddleware on a real create_agent: what it loads, what it stores, and when."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from chathistory import (
    BackendUnavailableError,
    ChatHistory,
    ConfigError,
    SessionIdError,
    get_backend,
    history_factory,
)
from chathistory.agents import ChatHistoryMiddleware
from chathistory.backends.memory import MemoryBackend
from chathistory.backends.sqlite import SqliteBackend


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


def test_a_turn_is_stored_whole_in_one_append_and_loaded_before_the_next_input(
        sqlite_path: str, agents: Any, turn_kinds: Any) -> None:
    middleware = ChatHistoryMiddleware("sqlite", path=sqlite_path)
    model = agents.model()
    agent = agents.build(middleware, model)
    agent.invoke(agents.ask("Paris"), context={"session_id": "ada"})
    second = agent.invoke(agents.ask("Rome"), context={"session_id": "ada"})

    # The model saw the first turn before the second question.
    assert model.prompt_sizes == [1, 3, 5, 7]
    assert [message.text for message in second["messages"]][:5] == [
        "Paris", "", "sunny in Paris", "It is sunny in Paris.", "Rome"]
    # A second process (a fresh backend on the same file) reads the whole transcript.
    with ChatHistory("ada", backend="sqlite", path=sqlite_path) as history:
        stored = history.get_messages()
    assert [message.type for message in stored] == ["human", "ai", "tool", "ai"] * 2
    call = stored[1]
    assert isinstance(call, AIMessage)
    assert call.tool_calls[0]["name"] == "get_weather"
    assert call.tool_calls[0]["args"] == {"city": "Paris"}
    result = stored[2]
    assert isinstance(result, ToolMessage)
    assert result.tool_call_id == call.tool_calls[0]["id"]
    assert stored[7].text == "It is sunny in Rome."
    middleware.close()


def test_each_run_is_one_append(memory: MemoryBackend, agents: Any, turn_kinds: Any) -> None:
    agent = agents.build(ChatHistoryMiddleware(memory))
    for city in ["Paris", "Rome", "Oslo"]:
        agent.invoke(agents.ask(city), context={"session_id": "s"})
    assert memory.calls["append"] == 3
    assert agents.kinds(memory.fetch("s")) == turn_kinds(3)


def test_sessions_are_kept_apart(memory: MemoryBackend, agents: Any) -> None:
    model = agents.model()
    agent = agents.build(ChatHistoryMiddleware(memory), model)
    agent.invoke(agents.ask("Paris"), context={"session_id": "a"})
    agent.invoke(agents.ask("Rome"), context={"session_id": "b"})
    assert model.prompt_sizes == [1, 3, 1, 3]
    assert memory.fetch("b")[0]["data"]["content"] == "Rome"


def test_a_reused_message_object_is_not_stored_twice(memory: MemoryBackend, agents: Any
                                                     ) -> None:
    model = agents.model()
    agent = agents.build(ChatHistoryMiddleware(memory), model)
    question = HumanMessage("Paris")
    agent.invoke({"messages": [question]}, context={"session_id": "s"})
    agent.invoke({"messages": [question]}, context={"session_id": "s"})
    # The second run's model saw the question once: 3 loaded messages, then the question.
    assert model.prompt_sizes[2] == 4
    contents = [record["data"]["content"] for record in memory.fetch("s")]
    assert contents.count("Paris") == 1
    ids = [record["data"]["id"] for record in memory.fetch("s")]
    assert len(ids) == len(set(ids))


def test_a_message_whose_id_is_stored_is_not_stored_again(memory: MemoryBackend, agents: Any
                                                          ) -> None:
    ChatHistory("s", backend=memory).add_messages([HumanMessage("Hello", id="hello-1"),
                                                   AIMessage("Hi!", id="hi-1")])
    agent = agents.build(ChatHistoryMiddleware(memory))
    agent.invoke({"messages": [HumanMessage("Hello", id="hello-1"), HumanMessage("Oslo")]},
                 context={"session_id": "s"})
    ids = [record["data"]["id"] for record in memory.fetch("s")]
    assert ids.count("hello-1") == 1
    assert len(ids) == len(set(ids)) == 2 + 4


def test_with_a_checkpointer_nothing_is_loaded_or_stored_twice(
        memory: MemoryBackend, agents: Any, turn_kinds: Any) -> None:
    ChatHistory("t1", backend=memory).add_messages([HumanMessage("before", id="old-1"),
                                                    AIMessage("noted", id="old-2")])
    model = agents.model()
    agent = agents.build(ChatHistoryMiddleware(memory), model, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    for city in ["Paris", "Rome", "Oslo"]:
        agent.invoke(agents.ask(city), config=config)

    # Loaded once from the store (2 messages), then the checkpoint carries the thread.
    assert model.prompt_sizes == [3, 5, 7, 9, 11, 13]
    stored = memory.fetch("t1")
    assert agents.kinds(stored) == ["human", "ai", *turn_kinds(3)]
    assert memory.calls["fetch"] == 1 + 1  # one by this test, one by the middleware
    assert memory.calls["append"] == 1 + 3


def test_resuming_after_an_interrupt_stores_the_turn_once_and_complete(
        memory: MemoryBackend, agents: Any) -> None:
    middleware = ChatHistoryMiddleware(memory)
    approval = HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})
    agent = agents.create_agent(agents.model(), middleware=[middleware, approval],
                                checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "hitl"}}

    paused = agent.invoke(agents.ask("Paris"), config=config)
    assert "__interrupt__" in paused
    assert memory.fetch("hitl") == []  # nothing is stored while the turn is unfinished
    agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config=config)
    assert agents.kinds(memory.fetch("hitl")) == list(agents.ONE_TURN)

    agent.invoke(agents.ask("Rome"), config=config)
    paused = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config=config)
    assert agents.kinds(memory.fetch("hitl")) == list(agents.ONE_TURN) * 2
    assert memory.calls["append"] == 2


def test_a_run_that_raises_in_the_model_stores_nothing(memory: MemoryBackend, agents: Any
                                                       ) -> None:
    def broken(messages: list[Any]) -> AIMessage:
        raise RuntimeError("the model is down")

    agent = agents.build(ChatHistoryMiddleware(memory),
                         agents.ToolCallingFakeModel(respond=broken))
    with pytest.raises(RuntimeError, match="the model is down"):
        agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    assert memory.fetch("s") == []
    assert memory.calls["append"] == 0


def test_a_run_that_raises_in_a_tool_stores_nothing(memory: MemoryBackend, agents: Any,
                                                    turn_kinds: Any) -> None:
    agent = agents.build(ChatHistoryMiddleware(memory))
    agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    with pytest.raises(agents.ToolFailure):
        agent.invoke(agents.ask("nowhere"), context={"session_id": "s"})
    assert agents.kinds(memory.fetch("s")) == turn_kinds(1)


class AppendFails(MemoryBackend):
    def append(self, session_id: str, records: Any) -> None:
        raise BackendUnavailableError("backend 'memory' is unavailable: the disk is gone")


def test_a_failed_append_is_raised_not_swallowed(agents: Any) -> None:
    backend = AppendFails()
    agent = agents.build(ChatHistoryMiddleware(backend))
    with pytest.raises(BackendUnavailableError, match="the disk is gone"):
        agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    assert backend.fetch("s") == []


# -- the session id --------------------------------------------------------------------


@dataclass
class AppContext:
    session_id: str
    user_name: str = "ada"


def test_the_session_id_comes_from_a_plain_context(memory: MemoryBackend, agents: Any) -> None:
    agents.build(ChatHistoryMiddleware(memory)).invoke(agents.ask("Paris"),
                                                       context={"session_id": "plain"})
    assert memory.sessions() == ["plain"]


def test_the_session_id_comes_from_a_context_schema(memory: MemoryBackend, agents: Any) -> None:
    agent = agents.build(ChatHistoryMiddleware(memory), context_schema=AppContext)
    agent.invoke(agents.ask("Paris"), context=AppContext(session_id="typed"))
    assert memory.sessions() == ["typed"]


def test_the_session_id_comes_from_the_thread_id(memory: MemoryBackend, agents: Any) -> None:
    agents.build(ChatHistoryMiddleware(memory)).invoke(
        agents.ask("Paris"), config={"configurable": {"thread_id": "thread-7"}})
    assert memory.sessions() == ["thread-7"]


def test_the_context_wins_over_the_thread_id(memory: MemoryBackend, agents: Any) -> None:
    agents.build(ChatHistoryMiddleware(memory)).invoke(
        agents.ask("Paris"), context={"session_id": "from-context"},
        config={"configurable": {"thread_id": "from-thread"}})
    assert memory.sessions() == ["from-context"]


def test_a_run_without_a_session_id_says_what_to_pass(memory: MemoryBackend, agents: Any
                                                      ) -> None:
    agent = agents.build(ChatHistoryMiddleware(memory))
    with pytest.raises(SessionIdError, match=r"context=\{'session_id'.*thread_id"):
        agent.invoke(agents.ask("Paris"))
    with pytest.raises(SessionIdError, match="must not be empty"):
        agent.invoke(agents.ask("Paris"), context={"session_id": ""})
    assert memory.calls["append"] == 0


# -- how the backend is given -----------------------------------------------------------


def test_a_history_factory_shares_its_backend(sqlite_path: str, agents: Any) -> None:
    factory = history_factory("sqlite", path=sqlite_path)
    agents.build(ChatHistoryMiddleware(factory)).invoke(agents.ask("Paris"),
                                                        context={"session_id": "s"})
    assert len(factory("s").messages) == 4
    factory.close()


def test_options_are_checked_when_the_middleware_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option 'paht'"):
        ChatHistoryMiddleware("sqlite", paht=str(tmp_path / "x.db"))
    with pytest.raises(TypeError, match="backend options go with a backend name"):
        ChatHistoryMiddleware(MemoryBackend(), path="x")
    # The error named "limit", an argument the middleware does not have.
    with pytest.raises(ValueError, match=r"^window must be None or an int >= 0, not -1$"):
        ChatHistoryMiddleware(MemoryBackend(), window=-1)
    # A title that is neither a flag nor a function was ignored: no title, and no word.
    with pytest.raises(TypeError, match=r"^title must be True, False or a function of the "
                                        r"first run's messages, not str$"):
        ChatHistoryMiddleware(MemoryBackend(), title="yes")  # type: ignore[arg-type]


def test_a_named_backend_is_built_once_and_closed_by_the_middleware(
        sqlite_path: str, agents: Any) -> None:
    middleware = ChatHistoryMiddleware("sqlite", path=sqlite_path)
    agent = agents.build(middleware)
    agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    backend = middleware.backend
    agent.invoke(agents.ask("Rome"), context={"session_id": "s"})
    assert middleware.backend is backend
    assert isinstance(backend, SqliteBackend)
    middleware.close()


def test_a_given_backend_is_left_open(agents: Any) -> None:
    backend = get_backend("memory")
    middleware = ChatHistoryMiddleware(backend)
    middleware.close()
    assert isinstance(backend, MemoryBackend)
    assert backend.calls["close"] == 0


def test_a_record_that_cannot_be_read_is_a_record_error_naming_the_session(
        memory: MemoryBackend, agents: Any) -> None:
    from chathistory import RecordError

    ChatHistory("s", backend=memory).add_messages([HumanMessage("hi"), AIMessage("hello")])
    memory.append("s", [{"type": "bogus", "data": {"content": "?"}}])
    agent = agents.build(ChatHistoryMiddleware(memory, window=10))
    with pytest.raises(RecordError, match=r"session 's': record 2 cannot be read"):
        agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    windowed = agents.build(ChatHistoryMiddleware(memory, window=2))
    with pytest.raises(RecordError, match=r"session 's': record 2 cannot be read"):
        windowed.invoke(agents.ask("Paris"), context={"session_id": "s"})
    assert len(memory.fetch("s")) == 3  # nothing stored by the runs that failed
