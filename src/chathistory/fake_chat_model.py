"""A chat model for tests and demos that calls tools, streams, and needs no network.

langchain-core's fake chat models cannot bind tools, so an agent built with
``create_agent`` cannot run on them. :class:`ToolCallingFakeModel` can: a
plain function decides each reply from the messages the model was sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.tool import ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

__all__ = ["ToolCallingFakeModel", "call_tool_then_answer"]

Respond = Callable[[list[BaseMessage]], AIMessage]


def call_tool_then_answer(tool: str, arguments: Callable[[str], dict[str, Any]],
                          answer: Callable[[str], str]) -> Respond:
    """A reply policy: a human message gets a call of ``tool``; its result gets an answer.

    Args:
        tool: The tool's name.
        arguments: Makes the call's arguments from the human message's text.
        answer: Makes the final answer from the tool's result.
    """
    def respond(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return AIMessage(answer(last.text))
        call_id = f"call-{uuid.uuid4().hex[:12]}"
        return AIMessage("", tool_calls=[{"name": tool, "args": arguments(last.text),
                                          "id": call_id, "type": "tool_call"}])
    return respond


class ToolCallingFakeModel(BaseChatModel):
    """A chat model whose replies come from ``respond(messages)``.

    It accepts ``bind_tools`` (the tools are the agent's business, the replies
    are ``respond``'s), streams its replies word by word with tool calls as
    tool-call chunks, and records how many messages each call was sent in
    ``prompt_sizes``. An exception raised by ``respond`` is the model failing.

    Example::

        model = ToolCallingFakeModel(respond=call_tool_then_answer(
            "get_weather", lambda text: {"city": text}, lambda result: f"It is {result}."))
        agent = create_agent(model, [get_weather], middleware=[ChatHistoryMiddleware()])
    """

    respond: Respond
    prompt_sizes: list[int] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None,
                   **kwargs: Any) -> ToolCallingFakeModel:
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        self.prompt_sizes.append(len(messages))
        return self.respond(messages)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        words = reply.text.split(" ")
        for position, word in enumerate(words):
            token = word if position == len(words) - 1 else word + " "
            if run_manager is not None:
                run_manager.on_llm_new_token(token)
            yield ChatGenerationChunk(message=AIMessageChunk(content=token, id=reply.id))
        if reply.tool_calls:
            chunks: list[ToolCallChunk] = [
                {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"],
                 "index": index, "type": "tool_call_chunk"}
                for index, call in enumerate(reply.tool_calls)
            ]
            yield ChatGenerationChunk(
                message=AIMessageChunk(content="", id=reply.id, tool_call_chunks=chunks))
