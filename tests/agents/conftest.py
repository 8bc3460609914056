"""A small agent for the middleware tests: one tool, a fake model that calls it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool

from chathistory.agents import ChatHistoryMiddleware
from chathistory.testing.chat_models import ToolCallingFakeModel, call_tool_then_answer


class ToolFailure(RuntimeError):
    """What the weather tool raises for the city "nowhere"."""


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == "nowhere":
        raise ToolFailure("no such city")
    return f"sunny in {city}"


def weather_model() -> ToolCallingFakeModel:
    """A human message gets a get_weather call for its text; the result gets an answer."""
    return ToolCallingFakeModel(respond=call_tool_then_answer(
        "get_weather", lambda text: {"city": text}, lambda result: f"It is {result}."))


def watched_model() -> tuple[ToolCallingFakeModel, list[list[BaseMessage]]]:
    """The weather model, and every list of messages it is sent, in order."""
    model = weather_model()
    prompts: list[list[BaseMessage]] = []
    respond = model.respond

    def watching(messages: list[BaseMessage]) -> Any:
        prompts.append(list(messages))
        return respond(messages)

    model.respond = watching
    return model, prompts


def build_agent(middleware: ChatHistoryMiddleware, model: ToolCallingFakeModel | None = None,
                **options: Any) -> Any:
    """create_agent with the weather tool, the given middleware and create_agent ``options``."""
    return create_agent(model or weather_model(), [get_weather], middleware=[middleware],
                        **options)


def ask(city: str) -> dict[str, list[BaseMessage]]:
    return {"messages": [HumanMessage(city)]}


def kinds(records: list[dict[str, Any]]) -> list[str]:
    """Each record's type, with the AI messages that call tools marked ``ai+call``."""
    return ["ai+call" if record["type"] == "ai" and record["data"].get("tool_calls")
            else record["type"] for record in records]


class Agents:
    """What the tests use, handed out by the ``agents`` fixture."""

    build = staticmethod(build_agent)
    create_agent = staticmethod(create_agent)
    ToolCallingFakeModel = ToolCallingFakeModel
    model = staticmethod(weather_model)
    watched_model = staticmethod(watched_model)
    ask = staticmethod(ask)
    kinds = staticmethod(kinds)
    ToolFailure = ToolFailure
    ONE_TURN = ("human", "ai+call", "tool", "ai")


@pytest.fixture
def agents() -> type[Agents]:
    return Agents


@pytest.fixture
def turn_kinds() -> Callable[[int], list[str]]:
    """The record types ``n`` whole weather turns leave in the store."""
    return lambda turns: list(Agents.ONE_TURN) * turns
