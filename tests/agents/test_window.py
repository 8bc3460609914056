"""The window: the newest N messages, trimmed so that no tool exchange is split."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from chathistory import ChatHistory
from chathistory.agents import ChatHistoryMiddleware, whole_turns
from chathistory.backends.memory import MemoryBackend


def turn(number: int) -> list[BaseMessage]:
    call = {"name": "get_weather", "args": {"city": f"c{number}"}, "id": f"call-{number}",
            "type": "tool_call"}
    return [HumanMessage(f"q{number}"), AIMessage("", tool_calls=[call]),
            ToolMessage(f"r{number}", tool_call_id=f"call-{number}"), AIMessage(f"a{number}")]


def texts(messages: list[BaseMessage]) -> list[str]:
    return [message.text or message.type for message in messages]


def test_a_window_never_starts_with_a_tool_result_or_mid_turn() -> None:
    history = turn(1) + turn(2)
    for cut in range(1, len(history)):
        kept = whole_turns(history[cut:])
        assert not kept or kept[0].type == "human", cut
    assert texts(whole_turns(history[2:])) == ["q2", "ai", "r2", "a2"]
    assert texts(whole_turns(history[4:])) == ["q2", "ai", "r2", "a2"]


def test_a_window_smaller_than_one_turn_loads_nothing() -> None:
    assert whole_turns(turn(1)[1:]) == []
    assert whole_turns(turn(1)[-1:]) == []


def test_a_history_that_ended_on_an_unanswered_tool_call_drops_the_call() -> None:
    history = turn(1) + turn(2)[:2]
    kept = whole_turns(history)
    assert texts(kept) == ["q1", "ai", "r1", "a1", "q2"]
    assert all(not (isinstance(message, AIMessage) and message.tool_calls)
               or message.tool_calls[0]["id"] == "call-1" for message in kept)


def test_a_call_answered_only_in_part_is_dropped_with_its_results() -> None:
    calls = [{"name": "t", "args": {}, "id": f"call-{n}", "type": "tool_call"} for n in (1, 2)]
    history = [HumanMessage("q"), AIMessage("", tool_calls=calls),
               ToolMessage("r1", tool_call_id="call-1"), HumanMessage("again")]
    assert texts(whole_turns(history)) == ["q", "again"]


def test_whole_turns_keep_everything_that_is_complete() -> None:
    history = [*turn(1), HumanMessage("plain"), AIMessage("reply"), *turn(2)]
    assert whole_turns(history) == history


def test_the_agent_sees_only_the_window_trimmed_to_whole_turns(agents: Any) -> None:
    memory = MemoryBackend()
    ChatHistory("s", backend=memory).add_messages(turn(1) + turn(2) + turn(3))
    for window, expected in [(2, 1), (4, 1 + 4), (6, 1 + 4), (8, 1 + 8), (None, 1 + 12)]:
        model = agents.model()
        agent = agents.build(ChatHistoryMiddleware(memory, window=window), model)
        agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
        assert model.prompt_sizes[0] == expected, window
        memory.clear("s")
        ChatHistory("s", backend=memory).add_messages(turn(1) + turn(2) + turn(3))


def test_a_session_that_ended_on_an_unanswered_call_runs_on(agents: Any) -> None:
    memory = MemoryBackend()
    ChatHistory("s", backend=memory).add_messages(turn(1) + turn(2)[:2])
    model = agents.model()
    result = agents.build(ChatHistoryMiddleware(memory, window=10), model).invoke(
        agents.ask("Paris"), context={"session_id": "s"})
    sent = result["messages"][:6]
    assert texts(sent) == ["q1", "ai", "r1", "a1", "q2", "Paris"]
    assert model.prompt_sizes[0] == 6
