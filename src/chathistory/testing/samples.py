"""Sample data for backend tests: messages of every type, numbered records, hostile ids."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
)

__all__ = ["HOSTILE_SESSION_IDS", "numbered_records", "sample_messages"]

HOSTILE_SESSION_IDS = [
    "it's; DROP TABLE message_store; --",
    '"quoted" \\ back\\slash',
    "100% _wild_ %s %(name)s ?",
    "tab\tnewline\nbell\x07 escape\x1b",
    "{hash}:tag:{}:*",
    "emoji 🧵👩‍💻 and ünïcödé 中文",
    "x" * 1000,
    "/messages/-",
]
"""Session ids that break a store which splices ids into SQL, keys, paths or patterns."""


def sample_messages() -> list[BaseMessage]:
    """One message of each type, with ids, names, tool calls, metadata and list content."""
    return [
        SystemMessage("You are terse.", id="sys-1", name="rules"),
        HumanMessage(
            content=[
                {"type": "text", "text": "What is in this picture? Grüße, 你好 👋"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
            id="human-1",
            name="ada",
            additional_kwargs={"client": {"tz": "Europe/Paris"}},
        ),
        AIMessage(
            content="Let me look that up.",
            id="ai-1",
            name="assistant",
            tool_calls=[{"name": "search", "args": {"q": "picture", "n": 3}, "id": "call-1",
                         "type": "tool_call"}],
            invalid_tool_calls=[{"name": "broken", "args": "{not json", "id": "call-2",
                                 "error": "bad json", "type": "invalid_tool_call"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
            response_metadata={"model_name": "fake-1", "finish_reason": "tool_calls",
                               "logprobs": None},
            additional_kwargs={"refusal": None},
        ),
        ToolMessage(content="a cat", tool_call_id="call-1", id="tool-1", name="search",
                    artifact={"hits": [1, 2.5, None, True]}, status="success"),
        ToolMessage(content="timeout", tool_call_id="call-2", status="error"),
        FunctionMessage(content='{"ok": true}', name="legacy_fn", id="fn-1"),
        ChatMessage(content="I am the narrator.", role="narrator", id="chat-1"),
        AIMessage(content=""),
    ]


def numbered_records(count: int, *, prefix: str = "m") -> list[dict[str, Any]]:
    """``count`` distinct records whose content says their position: ``m0``, ``m1``, ..."""
    return [message_to_dict(HumanMessage(f"{prefix}{index}")) for index in range(count)]
