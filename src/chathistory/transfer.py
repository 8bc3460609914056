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

Where both sides keep a session catalog (:class:`~chathistory.catalog.KeepsCatalog`;
a source that only lists summaries, :class:`~chathistory.catalog.ListsSummaries`,
will do), each session's owner, title, metadata and both times travel too, after its
records, so a migrated session keeps its age (``prune`` sees the source's
``updated_at``, not the day of the copy). An export writes them as a line of
their own, ``{"session_id": "...", "summary": {...}}``, before the session's
records. A session the catalog describes but that holds no message yet (a title
set first) is a session of 0 messages: it travels as its entry alone.

Where the target already holds a session, the two entries are merged: in a
restore (a copy, a plain import) the source's owner, title and metadata keys win
and the target's fill what it leaves unset; with ``append`` the target's win and
the file's fill. ``created_at`` is the earlier of the two; ``updated_at`` the
source's in a restore and the later of the two with ``append``.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import IO, Any, TypeVar

from chathistory import catalog
from chathistory.backend import Backend, ensure_collection
from chathistory.capabilities import (
    CopiesInBulk,
    CopiesRecordText,
    FetchesInBulk,
    ListsSessions,
    SessionInfo,
)
from chathistory.catalog import KeepsCatalog, ListsSummaries, SessionSummary, check_metadata
from chathistory.errors import (
    CapabilityMissingError,
    ChatHistoryError,
    CollectionMissingError,
    RecordError,
)
from chathistory.history import check_session_id
from chathistory.records import decode_record, encode_record, to_message, to_messages

__all__ = [
    "CopyReport",
    "ExportReport",
    "copy_sessions",
    "count_records",
    "export_sessions",
    "import_sessions",
    "iter_sessions",
    "list_session_ids",
    "sessions_to_transfer",
]

CHUNK = 200  # sessions per round trip
T = TypeVar("T")

Records = list[dict[str, Any]]
Progress = Callable[[int, int], None]
"""Called after each chunk with the sessions and the messages it finished."""
Checking = Callable[[int, bool], None]
"""Called as an import checks its lines: with the sessions checked since the last call,
and ``True`` the last time, once every line is checked and before anything is written."""
Read = Callable[[Sequence[str]], Mapping[str, list[Any]]]
Write = Callable[[dict[str, list[Any]]], None]
"""A copy's read of a chunk of sessions and write of what they lack: records, or texts."""


@dataclass
class CopyReport:
    """What a copy or an import did.

    Attributes:
        sessions: Sessions considered, those of 0 messages (a catalog entry only) too.
        messages: Records written to the target.
        complete: Sessions the target already held whole, so no record was written
            (one of 0 messages, where the target already had its catalog entry).
        mismatched: Sessions whose target records are not the start of the
            source's (or more than the source's): left untouched.
        summaries: Catalog entries (owner, title, metadata, times) given to the target.
        summaries_dropped: Catalog entries the source had but the target
            cannot keep (it does not declare KeepsCatalog).
        missing: Sessions a copy was asked for by id that the source holds
            nothing of (no message, no catalog entry): not counted in ``sessions``.
    """

    sessions: int = 0
    messages: int = 0
    complete: int = 0
    mismatched: list[str] = field(default_factory=list)
    summaries: int = 0
    summaries_dropped: int = 0
    missing: list[str] = field(default_factory=list)


def iter_sessions(backend: Backend, *, after: str | None = None, page: int = 1000
                  ) -> Iterator[list[SessionInfo]]:
    """Every page of ``backend``'s sessions after ``after`` (it must declare ListsSessions).

    A backend whose pages are not in id order, or whose next page does not
    move past the last id, is an error, not an endless loop.
    """
    name = getattr(backend, "name", type(backend).__name__)
    if not isinstance(backend, ListsSessions):
        raise CapabilityMissingError(
            f"backend {name!r} cannot list its sessions; name the sessions instead")
    while batch := backend.list_sessions(after=after, limit=page):
        if after is not None and batch[0].session_id <= after:
            raise ChatHistoryError(
                f"backend {name!r} listed {batch[0].session_id!r} after {after!r}: its "
                "list_sessions does not honour `after`")
        for earlier, later in pairwise(batch):
            if later.session_id <= earlier.session_id:
                raise ChatHistoryError(
                    f"backend {name!r} listed {later.session_id!r} after "
                    f"{earlier.session_id!r}: its list_sessions pages are not in id order")
        yield batch
        after = batch[-1].session_id


def list_session_ids(backend: Backend, *, page: int = 1000) -> list[str]:
    """Every session id of ``backend``, in id order (it must declare ListsSessions)."""
    return [info.session_id for batch in iter_sessions(backend, page=page) for info in batch]


def sessions_to_transfer(backend: Backend, *, page: int = 1000) -> list[str]:
    """Every session a copy or an export of the whole of ``backend`` carries, in id order.

    The sessions that hold messages (``backend`` must declare ListsSessions)
    and, where it keeps a catalog, those it only describes: an owner, title or
    metadata set, no message yet. Those are found by reading the whole catalog
    (``page`` entries per read). A store whose catalog table is not there (a
    table an older version made, read in place, as postgres reads
    langchain-postgres's) describes none.
    """
    ids = list_session_ids(backend, page=page)
    if not isinstance(backend, KeepsCatalog):
        return ids
    described: set[str] = set()
    cursor: str | None = None
    while True:
        try:
            listing = backend.list_summaries(newest_first=False, limit=page, cursor=cursor)
        except CollectionMissingError:
            if cursor is None:
                return ids
            raise
        described.update(summary.session_id for summary in listing.summaries
                         if not summary.messages)
        if listing.cursor is None:
            break
        cursor = listing.cursor
    return sorted(described.union(ids)) if described else ids


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


def _named_ids(session_ids: Sequence[str]) -> list[str]:
    """The ids a caller named; one no store can keep (a lone surrogate) is a ValueError
    before anything is read or created, not a codec's error midway."""
    return [catalog.check_session_id(session_id) for session_id in session_ids]


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
                   write: Write, *, as_text: bool = False, described: Collection[str] = ()
                   ) -> int:
    """Append with ``write`` what ``target`` lacks of ``sources``; return the records written.

    ``sources`` holds records, or with ``as_text`` their JSON texts, which are
    decoded only where the target already holds some of the session. A session
    of no records is complete where the target ``described`` it already.
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
            if records or session_id in described:
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


def _summaries(backend: Backend, session_ids: Sequence[str]) -> dict[str, SessionSummary]:
    # A read-only listing (Rockset's) has times to carry too, so a copy keeps their age.
    if isinstance(backend, ListsSummaries):
        return backend.session_summaries(session_ids)
    return {}


def _merged_summary(incoming: SessionSummary, held: SessionSummary | None, *,
                   append: bool = False) -> SessionSummary:
    """The catalog entry a copy or an import gives a session the target ``held`` already.

    In a restore (a copy, a plain import) the session is the source's: the
    target's records are the start of its own, written by an earlier run. So
    ``incoming``'s owner, title and metadata keys win, the target's fill what
    it leaves unset, and ``updated_at`` is ``incoming``'s (an earlier run
    killed before it gave the entry left the time of that run). With
    ``append`` the session is the target's and the file's records join it: the
    target's owner, title and metadata keys win, ``incoming``'s fill what is
    unset, and ``updated_at`` is the later of the two. ``created_at`` is the
    earlier of the two either way. Metadata too large merged (over
    :data:`~chathistory.catalog.MAX_METADATA_CHARS`) is the winner's alone.
    """
    if held is None:
        return incoming
    first, second = (held, incoming) if append else (incoming, held)
    metadata = {**second.metadata, **first.metadata}
    try:
        check_metadata(metadata)
    except ValueError:
        metadata = first.metadata
    return dataclasses.replace(
        incoming, owner=second.owner if first.owner is None else first.owner,
        title=second.title if first.title is None else first.title, metadata=metadata,
        created_at=min(incoming.created_at, held.created_at),
        updated_at=max(incoming.updated_at, held.updated_at) if append else incoming.updated_at)


def _held(target: Backend, summaries: Mapping[str, SessionSummary]) -> dict[str, SessionSummary]:
    """The target's own entries of the sessions ``summaries`` describe, before a write."""
    if summaries and isinstance(target, KeepsCatalog):
        return target.session_summaries(list(summaries))
    return {}


def _restore(target: Backend, summaries: Mapping[str, SessionSummary],
             held: Mapping[str, SessionSummary], report: CopyReport, *, append: bool
             ) -> None:
    """Give ``target`` the summaries of the sessions it now holds whole or in part.

    After their records: the append's triggers set the time of the copy,
    which the source's times then replace. Where the target ``held`` an entry
    before, the two are merged (:func:`_merged_summary`). Sessions left alone
    keep theirs.
    """
    left_alone = set(report.mismatched)
    kept = [_merged_summary(summary, held.get(session_id), append=append)
            for session_id, summary in summaries.items() if session_id not in left_alone]
    if not kept:
        return
    if isinstance(target, KeepsCatalog):
        target.restore_summaries(kept)
        report.summaries += len(kept)
    else:
        report.summaries_dropped += len(kept)


def _transfer(target: Backend, sources: Mapping[str, list[Any]],
              summaries: Mapping[str, SessionSummary], report: CopyReport, write: Write, *,
              as_text: bool = False, append: bool = False) -> int:
    """Write one chunk: its records (what the target lacks, or all with ``append``), then
    its catalog entries; return the records written.

    A session that ``summaries`` describes and that holds no record is a
    session of 0 messages: it gets its entry all the same.
    """
    sources = {**sources, **{session_id: [] for session_id in summaries
                             if session_id not in sources}}
    held = _held(target, summaries)  # before the write, whose triggers move the times
    if append:
        batches = {session_id: records for session_id, records in sources.items() if records}
        write(batches)
        written = sum(len(records) for records in batches.values())
        report.messages += written
    else:
        written = _write_missing(target, sources, report, write, as_text=as_text,
                                 described=held)
    _restore(target, summaries, held, report, append=append)
    return written


def copy_sessions(source: Backend, target: Backend, session_ids: Sequence[str] | None = None,
                  *, chunk: int = CHUNK, progress: Progress | None = None) -> CopyReport:
    """Copy sessions from ``source`` to ``target``, appending only what the target lacks.

    Between two backends that declare :class:`~chathistory.capabilities.CopiesRecordText`
    the records travel as their JSON text, undecoded.

    Args:
        source: The backend to read.
        target: The backend to write; its collection is created if missing.
        session_ids: The sessions to copy; ``None`` copies every session,
            those of 0 messages the catalog describes too (:func:`sessions_to_transfer`;
            ``source`` must declare ListsSessions).
        chunk: Sessions per read and per write.
        progress: Called with (sessions, messages) after each chunk.

    Raises:
        CapabilityMissingError: ``session_ids`` is None and the source cannot list sessions.
        ValueError: an id of ``session_ids`` holds a lone surrogate (nothing is written).
    """
    ids = sessions_to_transfer(source) if session_ids is None else _named_ids(session_ids)
    ensure_collection(target)
    report = CopyReport(sessions=len(ids))
    read, write, as_text = _copy_path(source, target)

    def read_with_summaries(part: Sequence[str]
                            ) -> tuple[Mapping[str, list[Any]], dict[str, SessionSummary]]:
        return read(part), _summaries(source, part)

    for part, (sources, summaries) in _read_ahead(read_with_summaries,
                                                 list(_chunks(ids, chunk))):
        if session_ids is not None:
            absent = [session_id for session_id in part
                      if not sources.get(session_id) and session_id not in summaries]
            report.missing += absent
            report.sessions -= len(absent)
        written = _transfer(target, sources, summaries, report, write, as_text=as_text)
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


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes:
        lines: Records written, one per line.
        missing: Sessions asked for by id that hold no message and have no
            catalog entry, so wrote nothing.
        summaries: Sessions' summary lines written (before their records).
        sessions: Sessions written: with their records, or (0 messages) their
            summary line alone.
    """

    lines: int = 0
    missing: list[str] = field(default_factory=list)
    summaries: int = 0
    sessions: int = 0


def export_sessions(source: Backend, out: IO[str], session_ids: Sequence[str] | None = None,
                    *, chunk: int = CHUNK, progress: Progress | None = None) -> ExportReport:
    """Write sessions as JSON Lines, ``{"session_id": ..., "record": {...}}`` per line.

    A session's lines are contiguous and oldest first. Each record is checked
    on the way: one that is not a message is not exported. Where the source
    keeps a catalog, a session's lines start with its summary,
    ``{"session_id": ..., "summary": {"owner", "title", "metadata",
    "created_at", "updated_at"}}`` (times in ISO 8601); a session it describes
    that holds no message is exported as that line alone.

    Raises:
        RecordError: a stored record cannot be read as a message; the error
            names its session and position (the lines before it were written).
        ValueError: an id of ``session_ids`` holds a lone surrogate (nothing is written).
    """
    ids = sessions_to_transfer(source) if session_ids is None else _named_ids(session_ids)
    report = ExportReport()

    def read(part: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, SessionSummary]]:
        return _fetch_many_text(source, part), _summaries(source, part)

    for part, (fetched, summaries) in _read_ahead(read, list(_chunks(ids, chunk))):
        for session_id in part:
            texts = fetched.get(session_id, [])
            if not texts and session_id not in summaries:
                report.missing.append(session_id)
                continue
            to_messages([decode_record(text) for text in texts], session_id=session_id)
            report.sessions += 1
            session = json.dumps(session_id, ensure_ascii=False)
            if session_id in summaries:
                entry = summaries[session_id].to_json()
                del entry["session_id"], entry["messages"]  # the records count themselves
                summary = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
                out.write(f'{{"session_id":{session},"summary":{summary}}}\n')
                report.summaries += 1
            for text in texts:
                if "\n" in text or "\r" in text:  # JSON whitespace that would split the line
                    text = encode_record(decode_record(text))
                out.write(f'{{"session_id":{session},"record":{text}}}\n')
            report.lines += len(texts)
        if progress is not None:
            progress(len(part), sum(len(records) for records in fetched.values()))
    return report


_LINE_SHAPE = '{"session_id": "...", "record": {...}}'


def _parse_line(number: int, line: str) -> tuple[str, dict[str, Any] | SessionSummary]:
    """The session id and record (or summary) of one exported line, or a RecordError."""
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise RecordError(f"line {number}: not valid JSON ({exc})") from None
    if not isinstance(entry, dict) or (set(entry) != {"session_id", "record"}
                                       and set(entry) != {"session_id", "summary"}):
        keys = f"keys {', '.join(map(repr, entry))}" if isinstance(entry, dict) else "no object"
        raise RecordError(f"line {number}: expected {_LINE_SHAPE}, found {keys}")
    session_id = entry["session_id"]
    _check_utf8(number, "session_id", session_id)  # first: it names the JSON escape
    try:
        check_session_id(session_id)
    except ValueError as exc:
        raise RecordError(f"line {number}: {exc}") from None
    if "summary" in entry:
        if not isinstance(entry["summary"], dict):
            raise RecordError(f"line {number}: the summary must be a JSON object")
        _check_utf8(number, "summary", entry["summary"])
        try:
            return session_id, SessionSummary.from_json(
                {**entry["summary"], "session_id": session_id, "messages": 0})
        except ValueError as exc:
            raise RecordError(f"line {number}: {exc}") from None
    record = entry["record"]
    if not isinstance(record, dict):
        raise RecordError(f"line {number}: the record must be a JSON object, not "
                          f"{type(record).__name__}")
    return session_id, record


def _check_utf8(number: int, what: str, value: object) -> None:
    """Refuse a lone surrogate (a JSON escape such as ``\\udcff``): no store can keep it."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError(f"line {number}: the {what} holds a lone surrogate (a \\uXXXX "
                          "escape that stands for no character), which is not valid UTF-8"
                          ) from None


def _check_record(number: int, record: dict[str, Any]) -> None:
    """Refuse, naming the line, a record that could not be stored or read back."""
    try:
        to_message(record)
    except RecordError as exc:
        raise RecordError(f"line {number}: the record is not a LangChain message: {exc}"
                          ) from None
    try:
        encode_record(record)
    except RecordError as exc:
        raise RecordError(f"line {number}: {exc}") from None


def _read_lines(lines: Iterable[str], *, check: bool = False
                ) -> Iterator[tuple[str, Records, SessionSummary | None]]:
    """Sessions from JSON Lines: (id, records, summary) per contiguous run of a session's lines.

    With ``check``, each record must also decode to a message and encode again.
    """
    seen: set[str] = set()
    current: str | None = None
    records: Records = []
    summary: SessionSummary | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        session_id, item = _parse_line(number, line)
        if session_id != current:
            if current is not None:
                yield current, records, summary
            if session_id in seen:
                raise RecordError(
                    f"line {number}: session {session_id!r} appears again after other sessions; "
                    "an export keeps each session's lines together")
            seen.add(session_id)
            current, records, summary = session_id, [], None
        if isinstance(item, SessionSummary):
            if summary is not None or records:
                raise RecordError(f"line {number}: a session's summary comes once, before "
                                  "its records")
            summary = item
            continue
        if check:
            _check_record(number, item)
        records.append(item)
    if current is not None:
        yield current, records, summary


def _check_every_line(lines: Iterable[str], chunk: int, checking: Checking | None) -> None:
    """Read every line with its checks, telling ``checking`` every ``chunk`` sessions."""
    checked = 0
    for _ in _read_lines(lines, check=True):
        checked += 1
        if checking is not None and checked == chunk:
            checking(checked, False)
            checked = 0
    if checking is not None:
        checking(checked, True)


def _validated(lines: Iterable[str], chunk: int, checking: Checking | None) -> Iterable[str]:
    """``lines`` once every line was checked: a file is read twice, anything else kept."""
    if isinstance(lines, io.TextIOBase) and lines.seekable():
        start = lines.tell()
        _check_every_line(lines, chunk, checking)
        lines.seek(start)
        return lines
    kept = list(lines)
    _check_every_line(kept, chunk, checking)
    return kept


def import_sessions(target: Backend, lines: Iterable[str], *, append: bool = False,
                    chunk: int = CHUNK, progress: Progress | None = None,
                    checking: Checking | None = None) -> CopyReport:
    """Import what :func:`export_sessions` wrote: each session gets what it lacks.

    Every line is checked before anything is written (or created): it must be
    ``{"session_id": "...", "record": {...}}``, the record one that
    ``messages_from_dict`` reads back as a message, and each session's lines
    must be together. A bad line anywhere is a :class:`RecordError` naming
    the line, and nothing is written.

    By default an import restores: a session the target lacks is written
    whole; one whose stored records are the start of the file's gets the rest,
    so an import is safe to run twice and to resume; one holding anything
    else is left alone and reported in ``mismatched``. With ``append``, every
    record of the file is appended after what its session holds, whatever
    that is (so running it twice adds everything twice).

    A session's summary line, where the target keeps a catalog, gives it its
    owner, title, metadata and both times, merged with the entry the target
    held (the file's win in a restore, the target's
    with ``append``). A session with a summary line and no record is a
    session of 0 messages: it gets its entry.

    ``progress`` is called after each chunk written, with its sessions and
    messages; ``checking`` as the lines are checked, with the sessions checked
    (``chunk`` at a time), and so tells the number of sessions to write.

    Raises:
        RecordError: a line is not an exported record; nothing was written.
    """
    lines = _validated(lines, chunk, checking)
    ensure_collection(target)
    report = CopyReport()
    pending: dict[str, Records] = {}
    summaries: dict[str, SessionSummary] = {}

    def flush() -> None:
        written = _transfer(target, pending, summaries, report, partial(_append_many, target),
                            append=append)
        if progress is not None:
            progress(len(pending), written)
        pending.clear()
        summaries.clear()

    for session_id, records, summary in _read_lines(lines):
        report.sessions += 1
        pending[session_id] = records
        if summary is not None:
            summaries[session_id] = summary
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    return report
