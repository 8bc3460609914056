"""What a run of the agent middleware loads: the window, and the summary of what is older.

Loading is written once, as a generator of steps (fetch, append, summarize),
and driven by :func:`drive` with a backend's sync methods or by
:func:`adrive` with its async ones, so the sync and async hooks share it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from chathistory.backend import Backend
from chathistory.compaction import Summarizer, Summary, summary_session_id
from chathistory.records import to_messages
from chathistory.window import complete_calls, history_start, safe_suffix, stable_id

__all__ = ["Loaded", "adrive", "drive", "load_steps"]


@dataclass(frozen=True)
class _Fetch:
    session_id: str
    limit: int | None


@dataclass(frozen=True)
class _Append:
    session_id: str
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class _Summarize:
    previous: str | None
    messages: list[BaseMessage]


_Step = _Fetch | _Append | _Summarize


@dataclass(frozen=True)
class Loaded:
    history: list[BaseMessage]
    summary: str | None
    empty: bool
    """The session held no message: this run's append is its first write."""


def _record_id(record: Mapping[str, Any]) -> str | None:
    data = record.get("data")
    return data.get("id") if isinstance(data, Mapping) else None


def _messages(session_id: str, records: Sequence[dict[str, Any]], first_position: int | None
              ) -> list[BaseMessage]:
    """Records as messages; one stored without an id gets :func:`stable_id` of its place.

    ``first_position`` is the place of ``records[0]`` in the session, or None
    when it is unknown (then every record has an id of its own).
    """
    messages = to_messages(records, session_id=session_id,
                           first_position=-len(records) if first_position is None
                           else first_position)
    return [message if message.id is not None
            else message.model_copy(update={"id": stable_id((first_position or 0) + offset)})
            for offset, message in enumerate(messages)]


def load_steps(session_id: str, window: int | None, summarizer: Summarizer | None
          ) -> Generator[_Step, Any, Loaded]:
    """What a run loads: the history the model sees, and the summary of what is older."""
    if summarizer is None or window is None:
        records = yield _Fetch(session_id, window)
        first: int | None = 0 if window is None or len(records) < window else None
        if first is None and any(_record_id(record) is None for record in records):
            # A stable id needs the place in the session, so the session's length.
            first = len((yield _Fetch(session_id, None))) - len(records)
        return Loaded(safe_suffix(_messages(session_id, records, first)), None,
                       empty=not records)

    records = yield _Fetch(session_id, window + summarizer.every)
    whole = len(records) < window + summarizer.every
    stored = [Summary.from_record(record)
              for record in (yield _Fetch(summary_session_id(session_id), 1))]
    summary = stored[0] if stored else None
    anchor = _anchor(records, summary, whole)
    if anchor is None and summary is not None and not whole:
        records = yield _Fetch(session_id, None)  # the summary's end left the fetched part
        whole = True
        anchor = _anchor(records, summary, whole)
    if anchor is None:
        summary = None  # none yet, or the session was cleared since: start from its start
        start, first = 0, 0
    else:
        start, first = anchor
    if summary is None and not whole:
        records = yield _Fetch(session_id, None)
        start, first = 0, 0
    window_start = max(len(records) - window, start)
    if window_start - start >= summarizer.every:
        cut = window_start + history_start(
            _messages(session_id, records[window_start:], first + window_start))
        older = _messages(session_id, records[start:cut], first + start)
        text = yield _Summarize(summary.text if summary else None, older)
        summary = Summary(text=text, covers=first + cut, last_id=older[-1].id or "")
        yield _Append(summary_session_id(session_id), [summary.to_record()])
        start = cut
    history = _messages(session_id, records[start:], first + start)
    return Loaded(safe_suffix(history) if start == 0 else complete_calls(history),
                   summary.text if summary else None, empty=not records)


def _anchor(records: Sequence[dict[str, Any]], summary: Summary | None, whole: bool
            ) -> tuple[int, int] | None:
    """Where the part after ``summary`` starts in ``records``, and the first record's place."""
    if summary is None:
        return None
    for index in range(len(records) - 1, -1, -1):
        if _record_id(records[index]) == summary.last_id:
            return index + 1, summary.covers - 1 - index
    if whole and summary.last_id == stable_id(summary.covers - 1) \
            and len(records) >= summary.covers:
        return summary.covers, 0  # the last covered message had no id of its own
    return None


def drive(steps: Generator[_Step, Any, Loaded], backend: Backend,
           summarizer: Summarizer | None) -> Loaded:
    reply: Any = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if isinstance(step, _Fetch):
            reply = backend.fetch(step.session_id, limit=step.limit)
        elif isinstance(step, _Append):
            backend.append(step.session_id, step.records)
            reply = None
        else:
            assert summarizer is not None
            reply = summarizer.summarize(step.previous, step.messages)


async def adrive(steps: Generator[_Step, Any, Loaded], backend: Backend,
                  summarizer: Summarizer | None) -> Loaded:
    reply: Any = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if isinstance(step, _Fetch):
            reply = await backend.afetch(step.session_id, limit=step.limit)
        elif isinstance(step, _Append):
            await backend.aappend(step.session_id, step.records)
            reply = None
        else:
            assert summarizer is not None
            reply = await summarizer.asummarize(step.previous, step.messages)
