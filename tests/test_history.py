import asyncio
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from chathistory import ChatHistory, ConfigError, RecordError, history_factory
from chathistory.backends.memory import MemoryBackend


class SyncForbidden(MemoryBackend):
    """Proves the async path never falls back to the sync methods."""

    def create_collection(self) -> None:
        raise AssertionError("sync create_collection called from async code")

    def append(self, session_id: str, records: Any) -> None:
        raise AssertionError("sync append called from async code")

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        raise AssertionError("sync fetch called from async code")

    def clear(self, session_id: str) -> None:
        raise AssertionError("sync clear called from async code")


def test_is_a_langchain_chat_message_history() -> None:
    assert isinstance(ChatHistory("s", backend=MemoryBackend()), BaseChatMessageHistory)


def test_a_batch_is_one_backend_call() -> None:
    backend = MemoryBackend()
    history = ChatHistory("s", backend=backend)
    history.add_messages([HumanMessage(str(n)) for n in range(10)])
    assert backend.calls["append"] == 1
    history.add_user_message("one more")
    assert backend.calls["append"] == 2
    history.add_messages([])
    assert backend.calls["append"] == 2


def test_collection_is_created_once_per_backend_lazily() -> None:
    backend = MemoryBackend()
    get_session_history = history_factory(backend)
    assert backend.calls["create_collection"] == 0
    for session in range(20):
        history = get_session_history(f"s{session}")
        history.add_user_message("hi")
        assert history.messages == [HumanMessage("hi")]
    assert backend.calls["create_collection"] == 1
    assert get_session_history("x").backend is get_session_history("y").backend


def test_get_messages_limit_gives_the_newest_oldest_first() -> None:
    history = ChatHistory("s", backend=MemoryBackend())
    messages: list[BaseMessage] = [HumanMessage(str(n)) for n in range(6)]
    history.add_messages(messages)
    assert history.get_messages(limit=2) == messages[-2:]
    assert history.get_messages(limit=0) == []
    assert history.get_messages(limit=100) == messages
    assert history.messages == messages


def test_async_methods_use_the_backends_async_twins() -> None:
    history = ChatHistory("s", backend=SyncForbidden())

    async def scenario() -> list[BaseMessage]:
        await history.aadd_messages([HumanMessage("a"), AIMessage("b")])
        await history.aadd_messages([HumanMessage("c")])
        newest = await history.aget_messages(limit=1)
        assert newest == [HumanMessage("c")]
        everything = await history.aget_messages()
        await history.aclear()
        assert await history.aget_messages() == []
        return everything

    assert asyncio.run(scenario()) == [HumanMessage("a"), AIMessage("b"), HumanMessage("c")]


def test_clear_touches_one_session_only() -> None:
    backend = MemoryBackend()
    ChatHistory("a", backend=backend).add_user_message("a")
    ChatHistory("b", backend=backend).add_user_message("b")
    ChatHistory("a", backend=backend).clear()
    assert ChatHistory("a", backend=backend).messages == []
    assert ChatHistory("b", backend=backend).messages == [HumanMessage("b")]


def _counting_model(prompt: PromptValue) -> AIMessage:
    return AIMessage(f"I saw {len(prompt.to_messages())} messages")


def _chain(get_session_history: Any) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages(
        [MessagesPlaceholder("history"), ("human", "{question}")])
    return RunnableWithMessageHistory(
        prompt | RunnableLambda(_counting_model), get_session_history,
        input_messages_key="question", history_messages_key="history")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_drops_into_runnable_with_message_history(sqlite_path: str) -> None:
    chain = _chain(history_factory("sqlite", path=sqlite_path))
    config: Any = {"configurable": {"session_id": "user-1"}}
    assert chain.invoke({"question": "hi"}, config=config).content == "I saw 1 messages"
    assert chain.invoke({"question": "again"}, config=config).content == "I saw 3 messages"
    other: Any = {"configurable": {"session_id": "user-2"}}
    assert chain.invoke({"question": "new"}, config=other).content == "I saw 1 messages"
    stored = ChatHistory("user-1", backend="sqlite", path=sqlite_path).messages
    assert [m.content for m in stored] == ["hi", "I saw 1 messages", "again", "I saw 3 messages"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_runnable_with_message_history_async_path(sqlite_path: str) -> None:
    chain = _chain(history_factory("sqlite", path=sqlite_path))
    config: Any = {"configurable": {"session_id": "async-user"}}

    async def scenario() -> list[str]:
        first = await chain.ainvoke({"question": "hi"}, config=config)
        second = await chain.ainvoke({"question": "again"}, config=config)
        return [str(first.content), str(second.content)]

    assert asyncio.run(scenario()) == ["I saw 1 messages", "I saw 3 messages"]


@pytest.mark.parametrize("session_id", ["", 42, None, b"bytes", "nul\x00inside",
                                        "lone \udcff surrogate"])
def test_bad_session_ids_are_value_errors(session_id: Any) -> None:
    with pytest.raises(ValueError, match="session_id"):
        ChatHistory(session_id, backend=MemoryBackend())


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True])
def test_bad_limits_are_value_errors(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        ChatHistory("s", backend=MemoryBackend()).get_messages(limit=limit)


def test_a_non_message_is_a_type_error_and_nothing_is_written() -> None:
    backend = MemoryBackend()
    history = ChatHistory("s", backend=backend)
    with pytest.raises(TypeError, match="message 1 is a str"):
        history.add_messages([HumanMessage("fine"), "not a message"])  # type: ignore[list-item]
    assert history.messages == []
    assert backend.calls["append"] == 0


def test_options_with_a_backend_instance_are_refused() -> None:
    with pytest.raises(TypeError, match="already configured"):
        ChatHistory("s", backend=MemoryBackend(), path="x")


def test_options_are_validated_against_the_named_backend(sqlite_path: str) -> None:
    with pytest.raises(ConfigError, match=r"backend 'sqlite': unknown option 'pathh'"):
        ChatHistory("s", backend="sqlite", pathh=sqlite_path)
    with pytest.raises(ConfigError, match=r"option 'timeout'"):
        ChatHistory("s", backend="sqlite", path=sqlite_path, timeout="soon")
    with pytest.raises(ConfigError, match=r"option 'table'"):
        ChatHistory("s", backend="sqlite", path=sqlite_path, table='x"; DROP TABLE y; --')


def test_a_history_built_from_a_name_owns_and_closes_its_backend(sqlite_path: str) -> None:
    with ChatHistory("s", backend="sqlite", path=sqlite_path) as history:
        history.add_user_message("kept")
    assert ChatHistory("s", backend="sqlite", path=sqlite_path).messages == [HumanMessage("kept")]
    shared = MemoryBackend()
    ChatHistory("s", backend=shared).close()
    assert shared.calls["close"] == 0


def test_chat_history_and_the_middleware_outlive_base_chat_message_history(tmp_path: Path
                                                                          ) -> None:
    """langchain-core 2.0 removes BaseChatMessageHistory: chathistory must still import and work."""
    script = f"""
import langchain_core.chat_history as module
del module.BaseChatMessageHistory
del module.InMemoryChatMessageHistory

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from chathistory import ChatHistory, ChatHistoryMiddleware
from chathistory.testing.chat_models import ToolCallingFakeModel, call_tool_then_answer

@tool
def echo(text: str) -> str:
    '''Echo the text.'''
    return text

path = {str(tmp_path / "chat.sqlite3")!r}
model = ToolCallingFakeModel(respond=call_tool_then_answer(
    "echo", lambda text: {{"text": text}}, lambda result: "said " + result))
agent = create_agent(model, [echo], middleware=[ChatHistoryMiddleware("sqlite", path=path)])
agent.invoke({{"messages": [HumanMessage("hi")]}}, context={{"session_id": "s"}})
with ChatHistory("s", backend="sqlite", path=path) as history:
    assert [m.type for m in history.messages] == ["human", "ai", "tool", "ai"], history.messages
    history.add_user_message("more")
    history.add_ai_message("ok")
    assert history.get_messages(limit=2)[0].text == "more"
    history.clear()
    assert history.messages == []
print("works without BaseChatMessageHistory")
"""
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", script],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "works without BaseChatMessageHistory" in result.stdout


@dataclass
class UnhashableBackend:
    """Satisfies the Backend protocol; a dataclass with eq=True is not hashable."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    created: int = 0

    def create_collection(self) -> None:
        self.created += 1

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        self.records.setdefault(session_id, []).extend(dict(record) for record in records)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        stored = self.records.get(session_id, [])
        return list(stored if limit is None else stored[max(0, len(stored) - limit):])

    def clear(self, session_id: str) -> None:
        self.records.pop(session_id, None)

    def close(self) -> None:
        pass

    async def acreate_collection(self) -> None:
        self.create_collection()

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        self.append(session_id, records)

    async def afetch(self, session_id: str, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        return self.fetch(session_id, limit=limit)

    async def aclear(self, session_id: str) -> None:
        self.clear(session_id)

    async def aclose(self) -> None:
        pass


def test_any_backend_satisfying_the_protocol_works_hashable_or_not() -> None:
    backend = UnhashableBackend()
    with pytest.raises(TypeError):
        hash(backend)
    for session_id in ["a", "b", "a"]:
        ChatHistory(session_id, backend=backend).add_messages([HumanMessage(session_id)])
    assert asyncio.run(ChatHistory("a", backend=backend).aget_messages()) == [
        HumanMessage("a"), HumanMessage("a")]
    assert backend.created == 1
    other = UnhashableBackend()
    ChatHistory("a", backend=other).add_messages([HumanMessage("x")])
    assert other.created == 1
    assert backend.created == 1


def test_assigning_messages_replaces_the_session_with_clear_then_one_append() -> None:
    backend = MemoryBackend()
    history = ChatHistory("s", backend=backend)
    history.add_messages([HumanMessage("old"), AIMessage("older")])
    ChatHistory("other", backend=backend).add_user_message("kept")
    history.messages = [HumanMessage("new"), AIMessage("newer")]
    assert history.messages == [HumanMessage("new"), AIMessage("newer")]
    assert (backend.calls["clear"], backend.calls["append"]) == (1, 3)
    history.messages = []
    assert history.messages == []
    assert [m.text for m in ChatHistory("other", backend=backend).messages] == ["kept"]


def test_assigning_a_message_that_cannot_be_stored_clears_nothing() -> None:
    history = ChatHistory("s", backend=MemoryBackend())
    history.add_user_message("kept")
    with pytest.raises(RecordError):
        history.messages = [HumanMessage("bad", additional_kwargs={"at": object()})]
    with pytest.raises(TypeError, match="takes a list of messages"):
        history.messages = HumanMessage("alone")  # type: ignore[assignment]
    assert [m.text for m in history.messages] == ["kept"]


@pytest.mark.parametrize("single", [HumanMessage("hi"), "hi"])
def test_a_single_message_instead_of_a_list_says_to_pass_a_list(single: Any) -> None:
    history = ChatHistory("s", backend=MemoryBackend())
    kind = type(single).__name__
    with pytest.raises(TypeError, match=rf"^add_messages takes a list of messages, not a "
                                        rf"single {kind}: pass a list, e.g. \[message\]$"):
        history.add_messages(single)
    with pytest.raises(TypeError, match=rf"^aadd_messages takes a list .* single {kind}"):
        asyncio.run(history.aadd_messages(single))
    with pytest.raises(TypeError, match="message 1 is a str, not a langchain_core"):
        history.add_messages([HumanMessage("ok"), "not a message"])  # type: ignore[list-item]
    assert history.messages == []


@pytest.mark.filterwarnings("ignore:The class `InMemoryChatMessageHistory` was deprecated")
def test_str_is_what_langchain_cores_own_history_gives() -> None:
    """Prompts built with str(history) or f"{history}" must not change on upgrade."""
    from langchain_core.chat_history import InMemoryChatMessageHistory
    from langchain_core.messages import SystemMessage

    from chathistory.testing.samples import sample_messages

    messages = [SystemMessage("system"), HumanMessage("human 1"), AIMessage("ai"),
                *sample_messages()]
    history = ChatHistory("s", backend=MemoryBackend())
    history.add_messages(messages)
    theirs = InMemoryChatMessageHistory(messages=messages)
    assert str(history) == str(theirs) == f"{history}"
    assert str(history).startswith("System: system\nHuman: human 1\nAI: ai\n")


def test_str_stays_the_same_when_base_chat_message_history_is_gone() -> None:
    """langchain-core 2.0 removes the base class: a process without it gives the same text."""
    code = """
import sys
sys.modules["langchain_core.chat_history"] = None  # as if langchain-core 2.0 were installed
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from chathistory import ChatHistory
from chathistory.backends.memory import MemoryBackend
assert ChatHistory.__mro__[1:] == (object,), ChatHistory.__mro__
history = ChatHistory("s", backend=MemoryBackend())
history.add_messages([SystemMessage("system"), HumanMessage("human 1"), AIMessage("ai")])
print(str(history), end="")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "System: system\nHuman: human 1\nAI: ai"


def _poisoned(backend: MemoryBackend) -> None:
    backend.append("ada", [{"type": "human", "data": {"content": "hi"}},
                           {"type": "bogus", "data": {"content": "?"}},
                           {"type": "ai", "data": {"content": "hello"}}])


def test_a_record_that_is_no_message_is_a_record_error_naming_session_and_position() -> None:
    backend = MemoryBackend()
    _poisoned(backend)
    history = ChatHistory("ada", backend=backend)
    expected = "session 'ada': record 1 cannot be read as a message: unknown message type 'bogus'"
    with pytest.raises(RecordError) as caught:
        history.messages  # noqa: B018
    assert str(caught.value) == expected
    with pytest.raises(RecordError, match="record 1 cannot"):
        asyncio.run(history.aget_messages())
    # Only the newest two were read: positions count back from the newest (-1).
    with pytest.raises(RecordError, match="session 'ada': record -2 cannot"):
        history.get_messages(limit=2)
    assert history.get_messages(limit=1) == [AIMessage("hello")]
