"""The window: the newest N messages, trimmed so that no tool exchange is split, never emptied."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from chathistory import ChatHistory
from chathistory.agents import ChatHistoryMiddleware, safe_suffix, whole_turns
from chathistory.backends.memory import MemoryBackend


def turn(number: int) -> list[BaseMessage]:
    call = {"name": "get_weather", "args": {"city": f"c{number}"}, "id": f"call-{number}",
            "type": "tool_call"}
    return [HumanMessage(f"q{number}"), AIMessage("", tool_calls=[call]),
            ToolMessage(f"r{number}", tool_call_id=f"call-{number}"), AIMessage(f"a{number}")]


def texts(messages: list[BaseMessage]) -> list[str]:
    return [message.text or message.type for message in messages]


def test_a_window_with_a_human_message_starts_at_the_first_one() -> None:
    history = turn(1) + turn(2)
    for cut in range(1, 5):
        assert texts(safe_suffix(history[cut:])) == ["q2", "ai", "r2", "a2"], cut


def test_a_window_inside_one_turn_starts_at_an_answered_ai_message() -> None:
    assert texts(safe_suffix(turn(1)[1:])) == ["ai", "r1", "a1"]
    assert texts(safe_suffix(turn(1)[2:])) == ["a1"]
    assert texts(safe_suffix(turn(1)[-1:])) == ["a1"]
    assert safe_suffix(turn(1)[2:3]) == []  # a lone tool result has no safe start


def test_whole_turns_is_the_same_rule() -> None:
    assert whole_turns is safe_suffix


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
    for window, expected in [(2, 1 + 1), (3, 1 + 3), (4, 1 + 4), (6, 1 + 4), (8, 1 + 8),
                             (None, 1 + 12)]:
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


def long_turn(calls: int) -> list[BaseMessage]:
    """One turn of a human message, ``calls`` tool exchanges one after another, an answer."""
    messages: list[BaseMessage] = [HumanMessage("plan my trip")]
    for number in range(calls):
        call = {"name": "get_weather", "args": {"city": f"c{number}"}, "id": f"long-{number}",
                "type": "tool_call"}
        messages += [AIMessage("", tool_calls=[call]),
                     ToolMessage(f"r{number}", tool_call_id=f"long-{number}")]
    return [*messages, AIMessage("Here is your trip.")]


def test_a_turn_longer_than_the_window_never_empties_the_history(agents: Any) -> None:
    stored = turn(1) + long_turn(12)
    assert len(long_turn(12)) == 26
    for window in range(1, 31):
        memory = MemoryBackend()
        ChatHistory("s", backend=memory).add_messages(stored)
        model, prompts = agents.watched_model()
        agents.build(ChatHistoryMiddleware(memory, window=window), model).invoke(
            agents.ask("Paris"), context={"session_id": "s"})

        history = prompts[0][:-1]
        # Inside the long turn: every safe start is an AI message, so the longest
        # suffix is the window itself when it starts at a call, one shorter otherwise.
        expected = (window if window % 2 else window - 1) if window <= 25 \
            else 26 if window < 30 else 30
        assert len(history) == expected, window
        assert texts(history) == texts(stored[-expected:]), window
        assert history[0].type in ("human", "ai"), window
        called = {call["id"] for message in history if isinstance(message, AIMessage)
                  for call in message.tool_calls}
        answered = {message.tool_call_id for message in history
                    if isinstance(message, ToolMessage)}
        assert called == answered, window
