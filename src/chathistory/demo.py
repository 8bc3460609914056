"""The README's main job: a LangChain 1.x agent whose memory is a chathistory backend.

The agent is built with ``create_agent``: one tool, a scripted model that
needs no network, and :class:`~chathistory.ChatHistoryMiddleware` over the
SQLite default. Nothing but the SQLite file carries the conversation from
one turn to the next.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from chathistory.agents import ChatHistoryMiddleware
from chathistory.fake_chat_model import ToolCallingFakeModel

__all__ = ["QUESTIONS", "run_conversation"]

QUESTIONS = [
    "What's the weather in Paris?",
    "And in Oslo?",
    "Which of the two cities was warmer?",
]

_WEATHER = {"Paris": "sunny, 21 °C", "Oslo": "light snow, -2 °C"}


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return _WEATHER.get(city, "unknown")


def _temperature(report: str) -> int:
    found = re.search(r"(-?\d+) °C", report)
    return int(found.group(1)) if found else 0


def _respond(messages: list[BaseMessage]) -> AIMessage:
    """The scripted model: look up a named city, else answer from the conversation so far."""
    calls = {call["id"]: call["args"]["city"] for message in messages
             if isinstance(message, AIMessage) for call in message.tool_calls}
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return AIMessage(f"In {calls.get(last.tool_call_id, 'that city')}: {last.text}.")
    city = next((name for name in _WEATHER if name in last.text), None)
    if city is not None:
        return AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": city},
                                          "id": f"call-{len(messages)}", "type": "tool_call"}])
    # No city named: the answer can only come from the history the model was sent.
    reports = {calls[message.tool_call_id]: message.text for message in messages
               if isinstance(message, ToolMessage) and message.tool_call_id in calls}
    if len(reports) < 2:
        return AIMessage("I don't know which cities you mean yet.")
    warmest = max(reports, key=lambda name: _temperature(reports[name]))
    return AIMessage(f"{warmest} was warmer: " + ", ".join(
        f"{name} {reports[name]}" for name in reports) + ".")


def run_conversation(session_id: str, path: str, say: Callable[[str], None] = print) -> None:
    """Run three turns; between turns the conversation lives only in the SQLite file."""
    model = ToolCallingFakeModel(respond=_respond)
    memory = ChatHistoryMiddleware("sqlite", path=path)
    agent = create_agent(model, [get_weather], system_prompt="You report the weather.",
                         middleware=[memory])
    try:
        for question in QUESTIONS:
            calls_before = len(model.prompt_sizes)
            result = agent.invoke({"messages": [HumanMessage(question)]},
                                  context={"session_id": session_id})
            sizes = model.prompt_sizes[calls_before:]
            stored = len(memory.backend.fetch(session_id))
            say(f"  you: {question}")
            for message in result["messages"][-(2 * len(sizes) - 1):]:
                say(f"  {_line(message)}")
            sent = ", then ".join(str(size) for size in sizes)
            say(f"       [the model was sent {sent} messages; {stored} are stored]")
    finally:
        memory.close()


def _line(message: BaseMessage) -> str:
    if isinstance(message, AIMessage) and message.tool_calls:
        call = message.tool_calls[0]
        arguments = ", ".join(f"{name}={value!r}" for name, value in call["args"].items())
        return f"bot: (calls {call['name']}({arguments}))"
    if isinstance(message, ToolMessage):
        return f"tool: {message.text}"
    return f"bot: {message.text}"
