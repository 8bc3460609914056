"""Summaries of the part of a conversation older than the window, kept beside the transcript.

A summary is a record in a sibling session (:func:`summary_session_id`), so
that any backend keeps it with its four methods and the transcript itself
stays whole: ``chathistory show`` and ``export`` of the session never see a
summary. Each summary says how many of the session's messages it covers and
the id of the last one, so the next load knows where the verbatim part starts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    BaseMessage,
    HumanMessage,
    SystemMessage,
    get_buffer_string,
    message_to_dict,
)
from langchain_core.runnables import Runnable

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "Summarizer",
    "Summary",
    "summary_session_id",
]

SUMMARY_SUFFIX = "~summary"
SUMMARY_KEY = "chathistory_summary"

DEFAULT_SUMMARY_PROMPT = (
    "You keep the running summary of a conversation between a user and an assistant "
    "that uses tools. Write a concise summary that keeps every fact, name, number, "
    "decision and open question a later turn may need. Reply with the summary only."
)


_SUMMARY_NAMESPACE = uuid.UUID("5f1e4c1a-8a0e-4d8e-9a43-3c1c2f6b7d21")


def summary_session_id(session_id: str) -> str:
    """The session that holds ``session_id``'s summaries: ``<session_id>~summary``.

    A session id that is a UUID (a store that takes only UUIDs, such as the
    postgres backend's ``langchain_postgres`` layout) gets a UUID derived from
    it instead (uuid5), so the summaries fit wherever the session does.
    """
    try:
        parsed = uuid.UUID(session_id)
    except ValueError:
        return session_id + SUMMARY_SUFFIX
    return str(uuid.uuid5(_SUMMARY_NAMESPACE, f"{parsed}{SUMMARY_SUFFIX}"))


@dataclass(frozen=True)
class Summary:
    """A summary of a session's first ``covers`` messages, the last of which has ``last_id``."""

    text: str
    covers: int
    last_id: str

    def to_record(self) -> dict[str, Any]:
        marker = {"covers": self.covers, "last_id": self.last_id}
        return message_to_dict(SystemMessage(self.text, additional_kwargs={SUMMARY_KEY: marker}))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Summary | None:
        data = record.get("data") or {}
        marker = (data.get("additional_kwargs") or {}).get(SUMMARY_KEY)
        if not isinstance(marker, dict) or not isinstance(data.get("content"), str):
            return None
        return cls(text=data["content"], covers=int(marker["covers"]),
                   last_id=str(marker["last_id"]))


@dataclass(frozen=True)
class Summarizer:
    """Folds older messages into the running summary with the application's chat model.

    Args:
        model: Any LangChain chat model; the application's own is the usual choice.
        every: Summarize again only once this many messages have left the window
            since the last summary.
        prompt: The system prompt of a summary call.
    """

    model: BaseChatModel
    every: int = 40
    prompt: str = DEFAULT_SUMMARY_PROMPT

    def __post_init__(self) -> None:
        if not isinstance(self.model, Runnable):
            raise TypeError("summarizer must be a chat model (or a Runnable that answers "
                            f"messages, such as model.with_retry()), not "
                            f"{type(self.model).__name__}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"summarize_every must be an int >= 1, not {self.every!r}")

    def _request(self, previous: str | None, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        parts = []
        if previous:
            parts.append(f"The summary so far:\n{previous}")
        parts.append(f"The messages to add to it:\n{get_buffer_string(messages)}")
        return [SystemMessage(self.prompt), HumanMessage("\n\n".join(parts))]

    def summarize(self, previous: str | None, messages: Sequence[BaseMessage]) -> str:
        return self.model.invoke(self._request(previous, messages)).text

    async def asummarize(self, previous: str | None, messages: Sequence[BaseMessage]) -> str:
        return (await self.model.ainvoke(self._request(previous, messages))).text
