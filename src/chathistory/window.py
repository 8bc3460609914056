"""What a run loads from a stored transcript: the window rule and stable ids.

The middleware loads the newest ``window`` records of a session. This module
decides which of them the model may be sent (never a tool result without its
call, never a call without all its results) and gives every loaded message an
id that does not change from one load to the next.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

__all__ = ["complete_calls", "history_start", "safe_suffix", "stable_id", "whole_turns"]


def _call_ids(message: BaseMessage) -> set[str] | None:
    """The ids of an AI message's tool calls; None if any call has no id."""
    if not isinstance(message, AIMessage):
        return set()
    ids = {call["id"] for call in message.tool_calls if call["id"] is not None}
    return ids if len(ids) == len(message.tool_calls) else None


def _answered(messages: Sequence[BaseMessage]) -> set[str]:
    return {message.tool_call_id for message in messages if isinstance(message, ToolMessage)}


def history_start(messages: Sequence[BaseMessage]) -> int:
    """Where the loaded history starts (rules 1 and 2 of :func:`safe_suffix`)."""
    for index, message in enumerate(messages):
        if message.type == "human":
            return index
    answered: set[str] = set()
    starts = len(messages)
    # No human message in the window: the newest turn alone is longer than it.
    # Walk back from the newest message; the earliest AI message whose calls
    # are all answered after it is the start of the longest safe suffix.
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, ToolMessage):
            answered.add(message.tool_call_id)
        elif isinstance(message, AIMessage):
            ids = _call_ids(message)
            if ids is not None and ids <= answered:
                starts = index
    return starts


def safe_suffix(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The part of a loaded window that a model may be sent.

    The rule, in order:

    1. If the window holds a human message, the history starts at the first
       one: whole turns only.
    2. Otherwise the newest turn alone is longer than the window, and the
       history is the longest suffix that starts at an AI message whose tool
       calls are all answered inside the suffix. So a window never empties a
       history that has a safe start, however long the turn.
    3. Inside the chosen part, an AI message whose calls are not all answered
       (a run that ended on an unanswered call) is dropped, and so is a tool
       result whose call is not kept.
    """
    return complete_calls(messages[history_start(messages):])


def complete_calls(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Rule 3 of :func:`safe_suffix`: drop calls not all answered, and orphaned results."""
    answered = _answered(messages)
    kept: list[BaseMessage] = []
    called: set[str] = set()
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            ids = _call_ids(message)
            if ids is None or not ids <= answered:
                continue
            called |= ids
        elif isinstance(message, ToolMessage) and message.tool_call_id not in called:
            continue
        kept.append(message)
    return kept


whole_turns = safe_suffix
"""The name this rule had before it learnt rule 2; kept for existing imports."""


def stable_id(position: int) -> str:
    """The id a stored message without one gets: its place in the session, from 0."""
    return f"chathistory-{position}"
