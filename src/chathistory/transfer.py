"""Sessions as data: copy them between backends, export and import them as JSON Lines.

A copy reads many sessions per round trip from a source that declares
:class:`~chathistory.capabilities.FetchesInBulk`, writes many per round trip to
a target that declares :class:`~chathistory.capabilities.CopiesInBulk`, and
goes one session per round trip otherwise; between two backends that declare
:class:`~chathistory.capabilities.CopiesRecordText`, records travel as their
JSON text, never decoded. It is safe to run twice and to interrupt: before
writing a chunk of sessions it reads what the target already holds of them,
and appends only what is missing after it. A session whose stored records are
not the start of the source's is left alone and reported as a mismatch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import IO, Any, TypeVar

from chathistory.backend import Backend, ensure_collection
from chathistory.capabilities import (
    CopiesInBulk,
    CopiesRecordText,
    FetchesInBulk,
    ListsSessions,
    SessionInfo,
)
from chathistory.errors import CapabilityMissingError, ChatHistoryError, RecordError
from chathistory.records import decode_record, encode_record

__all__ = [
    "CopyReport",
    "copy_sessions",
    "count_records",
    "export_sessions",
    "import_sessions",
    "iter_sessions",
    "list_session_ids",
]

CHUNK = 200  # sessions per round trip
T = TypeVar("T")

Records = list[dict[str, Any]]
Progress = Callable[[int, int], None]
"""Called after each chunk with the sessions and the messages it finished."""
Read = Callable[[Sequence[str]], Mapping[str, list[Any]]]
Write = Callable[[dict[str, list[Any]]], None]
"""A copy's read of a chunk of sessions and write of what they lack: records, or texts."""


@dataclass
class CopyReport:
    """What a copy or an import did.

    Attributes:
        sessions: Sessions considered.
        messages: Records written to the target.
        complete: Sessions the target already held whole, so nothing was written.
        mismatched: Sessions whose target records are not the start of the
            source's (or more than the source's): left untouched.
    """

    sessions: int = 0
    messages: int = 0
    complete: int = 0
    mismatched: list[str] = field(default_factory=list)


def iter_sessions(backend: Backend, *, after: str | None = None, page: int = 1000
                  ) -> Iterator[list[SessionInfo]]:
    """Every page of ``backend``'s sessions after ``after`` (it must declare ListsSessions).

    A backend whose pages are not in id order, or whose next page does not
    move past the last id, is an error, not an endless loop.
    """
    if not isinstance(backend, ListsSessions):
        raise CapabilityMissingError(
            f"backend {type(backend).__name__} cannot list its sessions; name the sessions "
            "instead")
    name = type(backend).__name__
    while batch := backend.list_sessions(after=after, limit=page):
        if after is not None and batch[0].session_id <= after:
            raise ChatHistoryError(
                f"backend {name} listed {batch[0].session_id!r} after {after!r}: its "
                "list_sessions does not honour `after`")
        for earlier, later in pairwise(batch):
            if later.session_id <= earlier.session_id:
                raise ChatHistoryError(
                    f"backend {name} listed {later.session_id!r} after "
                    f"{earlier.session_id!r}: its list_sessions pages are not in id order")
        yield batch
        after = batch[-1].session_id


def list_session_ids(backend: Backend, *, page: int = 1000) -> list[str]:
    """Every session id of ``backend``, in id order (it must declare ListsSessions)."""
    return [info.session_id for batch in iter_sessions(backend, page=page) for info in batch]


def _fetch_many(backend: Backend, session_ids: Sequence[str]) -> dict[str, Records]:
    if isinstance(backend, FetchesInBulk):
        return backend.fetch_many(session_ids)
    fetched = {session_id: backend.fetch(session_id) for session_id in session_ids}
    return {session_id: records for session_id, records in fetched.items() if records}


def _fetch_many_text(backend: Backend, session_ids: Sequence[str]) -> dict[str, list[str]]:
    if isinstance(backend, CopiesRecordText):
        return backend.fetch_many_text(session_ids)
    return {session_id: [encode_record(record) for record in records]
            for session_id, records in _fetch_many(backend, session_ids).items()}


def _append_many(backend: Backend, batches: Mapping[str, Records]) -> None:
    if isinstance(backend, CopiesInBulk):
        backend.append_many(batches)
        return
    for session_id, records in batches.items():
        backend.append(session_id, records)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _read_ahead(read: Callable[[Sequence[str]], T], parts: list[Sequence[str]]
                ) -> Iterator[tuple[Sequence[str], T]]:
    """Each part with what ``read`` returns for it; the next part is read meanwhile.

    The caller writes one part while a thread reads the next, so a copy's read
    of the source and write to the target overlap, each mostly waiting on its
    own store. The source is used from that one thread only.
    """
    if not parts:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chathistory-read") as reader:
        upcoming = reader.submit(read, parts[0])
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            done = upcoming.result()
            if following is not None:
                upcoming = reader.submit(read, following)
            yield part, done


def _write_missing(target: Backend, sources: Mapping[str, list[Any]], report: CopyReport,
                   write: Write, *, as_text: bool = False
                   ) -> int:
    """Append with ``write`` what ``target`` lacks of ``sources``; return the records written.

    ``sources`` holds records, or with ``as_text`` their JSON texts, which are
    decoded only where the target already holds some of the session.
    """
    held = _fetch_many(target, list(sources))
    batches: dict[str, list[Any]] = {}
    for session_id, records in sources.items():
        stored = held.get(session_id, [])
        head = records[:len(stored)]
        if as_text and stored:
            head = [decode_record(text) for text in head]
        if stored != head:  # also when the target holds more than the source
            report.mismatched.append(session_id)
        elif len(stored) == len(records):
            report.complete += 1
        else:
            batches[session_id] = records[len(stored):]
    write(batches)
    written = sum(len(records) for records in batches.values())
    report.messages += written
    return written


def _copy_path(source: Backend, target: Backend) -> tuple[Read, Write, bool]:
    """How a copy reads and writes: as JSON text where both sides can, else as records."""
    if isinstance(source, CopiesRecordText) and isinstance(target, CopiesRecordText):
        return source.fetch_many_text, target.append_many_text, True
    return partial(_fetch_many, source), partial(_append_many, target), False


def copy_sessions(source: Backend, target: Backend, session_ids: Sequence[str] | None = None,
                  *, chunk: int = CHUNK, progress: Progress | None = None) -> CopyReport:
    """Copy sessions from ``source`` to ``target``, appending only what the target lacks.

    Between two backends that declare :class:`~chathistory.capabilities.CopiesRecordText`
    the records travel as their JSON text, undecoded.

    Args:
        source: The backend to read.
        target: The backend to write; its collection is created if missing.
        session_ids: The sessions to copy; ``None`` copies every session
            (``source`` must declare ListsSessions).
        chunk: Sessions per read and per write.
        progress: Called with (sessions, messages) after each chunk.

    Raises:
        CapabilityMissingError: ``session_ids`` is None and the source cannot list sessions.
    """
    ids = list_session_ids(source) if session_ids is None else list(session_ids)
    ensure_collection(target)
    report = CopyReport(sessions=len(ids))
    read, write, as_text = _copy_path(source, target)
    for part, sources in _read_ahead(read, list(_chunks(ids, chunk))):
        written = _write_missing(target, sources, report, write, as_text=as_text)
        if progress is not None:
            progress(len(part), written)
    return report


def count_records(backend: Backend, session_ids: Sequence[str], *, chunk: int = CHUNK
                  ) -> dict[str, int]:
    """How many records each session holds, from a listing where it has counts."""
    counts: dict[str, int] = {}
    wanted = set(session_ids)
    if isinstance(backend, ListsSessions):
        for page in iter_sessions(backend):
            for info in page:
                if info.session_id in wanted and info.messages is not None:
                    counts[info.session_id] = info.messages
    missing = [session_id for session_id in session_ids if session_id not in counts]
    for part in _chunks(missing, chunk):
        held = _fetch_many(backend, part)
        counts.update({session_id: len(held.get(session_id, [])) for session_id in part})
    return {session_id: counts.get(session_id, 0) for session_id in session_ids}


def export_sessions(source: Backend, out: IO[str], session_ids: Sequence[str] | None = None,
                    *, chunk: int = CHUNK, progress: Progress | None = None) -> int:
    """Write sessions as JSON Lines, ``{"session_id": ..., "record": {...}}`` per line.

    A session's lines are contiguous and oldest first. Returns the lines written.
    """
    ids = list_session_ids(source) if session_ids is None else list(session_ids)
    lines = 0
    for part, fetched in _read_ahead(partial(_fetch_many_text, source),
                                     list(_chunks(ids, chunk))):
        for session_id in part:
            for text in fetched.get(session_id, []):
                if "\n" in text or "\r" in text:  # JSON whitespace that would split the line
                    text = encode_record(decode_record(text))
                session = json.dumps(session_id, ensure_ascii=False)
                out.write(f'{{"session_id":{session},"record":{text}}}\n')
                lines += 1
        if progress is not None:
            progress(len(part), sum(len(records) for records in fetched.values()))
    return lines


def _read_lines(lines: Iterable[str]) -> Iterator[tuple[str, Records]]:
    """Sessions from JSON Lines, one (id, records) per contiguous run of a session's lines."""
    seen: set[str] = set()
    current: str | None = None
    records: Records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = decode_record(line)
            session_id, record = entry["session_id"], entry["record"]
        except (RecordError, KeyError) as exc:
            raise RecordError(f"line {number}: not an exported record ({exc})") from None
        if not isinstance(session_id, str) or not isinstance(record, dict):
            raise RecordError(f"line {number}: session_id must be a string and record an object")
        if session_id != current:
            if current is not None:
                yield current, records
            if session_id in seen:
                raise RecordError(
                    f"line {number}: session {session_id!r} appears again after other sessions; "
                    "an export keeps each session's lines together")
            seen.add(session_id)
            current, records = session_id, []
        records.append(record)
    if current is not None:
        yield current, records


def import_sessions(target: Backend, lines: Iterable[str], *, chunk: int = CHUNK,
                    progress: Progress | None = None) -> CopyReport:
    """Import what :func:`export_sessions` wrote, appending only what ``target`` lacks.

    Like a copy, an import is safe to run twice and to interrupt.
    """
    ensure_collection(target)
    report = CopyReport()
    pending: dict[str, Records] = {}

    def flush() -> None:
        written = _write_missing(target, pending, report, partial(_append_many, target))
        if progress is not None:
            progress(len(pending), written)
        pending.clear()

    for session_id, records in _read_lines(lines):
        report.sessions += 1
        pending[session_id] = records
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    return report
