"""The in-memory fake: a faithful backend for applications' unit tests.

It stores JSON text, so a record a real store would refuse is refused here
too, at ``add_messages`` time. It can inject failures and latency, and
mimic a layout that cannot hold NUL characters (``refuse_nul=True``).

By name (``backend="memory"``), histories built with equal options share one
store for the life of the process, as they would share a database; a
``MemoryBackend()`` built directly, and each fake of the fake swap, has a
store of its own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from chathistory.backend import BackendConfig, BaseBackend
from chathistory.capabilities import SessionInfo, check_cutoff, check_record_texts
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    MetadataValue,
    SessionSummary,
    SummaryPage,
    Unchanged,
    check_limit,
    check_metadata,
    check_session_ids,
    check_text,
    check_update,
    check_where,
    checked_entry,
    merge_metadata,
    metadata_matches,
    read_cursor,
    summary_page,
)
from chathistory.driver import Call, Driver, Operation
from chathistory.errors import BackendUnavailableError, RecordError
from chathistory.hookspecs import hookimpl
from chathistory.operations import operation
from chathistory.records import decode_records, encode_records
from chathistory.runner import Runner

__all__ = ["MemoryBackend", "SharedMemoryBackend", "forget_shared_stores"]


@dataclass
class _Entry:
    """A session's catalog entry; ``updated_at`` is its last append (or ``created_at``)."""

    created_at: datetime
    updated_at: datetime
    owner: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class _Catalog(dict[str, _Entry]):
    """The entries by session, and each owner's sessions: one owner's page costs theirs only."""

    def __init__(self) -> None:
        super().__init__()
        self.owned: dict[str, set[str]] = {}

    def _unindex(self, session: str) -> None:
        entry = super().get(session)
        if entry is None or entry.owner is None:
            return
        owned = self.owned.get(entry.owner, set())
        owned.discard(session)
        if not owned:
            self.owned.pop(entry.owner, None)

    def __setitem__(self, session: str, entry: _Entry) -> None:
        self._unindex(session)
        super().__setitem__(session, entry)
        if entry.owner is not None:
            self.owned.setdefault(entry.owner, set()).add(session)

    def __delitem__(self, session: str) -> None:
        self._unindex(session)
        super().__delitem__(session)

    def pop(self, session: str, default: Any = None) -> Any:
        if session not in self:
            return default
        entry = self[session]
        del self[session]
        return entry

    def set_owner(self, session: str, owner: str | None) -> None:
        self._unindex(session)
        self[session].owner = owner
        if owner is not None:
            self.owned.setdefault(owner, set()).add(session)


class MemoryBackend(BaseBackend):
    """Keeps every session in a dict of JSON strings, guarded by a lock.

    Example::

        backend = MemoryBackend()
        backend.fail_next(2)          # the next two calls raise BackendUnavailableError
        backend.latency = 0.05        # every call then takes 50 ms longer
        backend.calls["append"]       # how many appends the code under test made
    """

    name = "memory"

    class Config(BackendConfig):
        latency: float = Field(0.0, ge=0, description="Seconds added to every call.")
        refuse_nul: bool = Field(
            False, description="Refuse strings holding NUL (U+0000) with RecordError, as a "
                               "layout whose text type cannot hold it would.")

    config: Config

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config or self.Config())
        self.latency = self.config.latency
        self.calls: Counter[str] = Counter()
        self._sessions: dict[str, list[str]] = {}
        self._catalog = _Catalog()
        self._lock = threading.Lock()
        self._failures_left = 0
        self.runner = Runner(self, MemoryDriver(self))

    def fail_next(self, count: int = 1) -> None:
        """Make the next ``count`` calls raise BackendUnavailableError, changing nothing."""
        with self._lock:
            self._failures_left = count

    def begin(self, operation: str) -> None:
        """Count a call of ``operation``; raise the next injected failure, if any."""
        with self._lock:
            self.calls[operation] += 1
            if self._failures_left > 0:
                self._failures_left -= 1
                raise BackendUnavailableError(
                    f"backend 'memory' is unavailable: injected failure in {operation}"
                )

    def _encode(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The records as JSON text; with ``refuse_nul``, a RecordError for a NUL in one."""
        if self.config.refuse_nul:
            for record in records:
                where = _nul_in(record, "record")
                if where is not None:
                    raise RecordError(
                        f"backend 'memory' (refuse_nul=True) cannot store {where}: it holds a "
                        "NUL character (U+0000), which this layout cannot hold; nothing was "
                        "written"
                    )
        return encode_records(records)

    def sessions(self) -> list[str]:
        """The ids of the sessions that have records, for assertions in tests."""
        with self._lock:
            return [session for session, stored in self._sessions.items() if stored]

    # Each operation yields one request: a function run under the store's lock.

    @operation(write=True)
    def create_collection(self) -> Operation[None]:
        yield _nothing

    @operation(write=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        encoded = self._encode(records)
        yield lambda: self._store({session_id: encoded})

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        def read() -> list[str]:
            stored = self._sessions.get(session_id, [])
            return stored[max(0, len(stored) - limit):] if limit is not None else stored[:]

        return decode_records((yield read))

    @operation(write=True)
    def clear(self, session_id: str) -> Operation[None]:
        def clear() -> None:
            self._sessions.pop(session_id, None)
            self._catalog.pop(session_id, None)

        yield clear

    # -- optional capabilities: listing, write times, pruning, bulk copies -------------------

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        limit = check_limit(limit)

        def page() -> list[SessionInfo]:
            chosen = sorted(session for session, stored in self._sessions.items()
                            if stored and (after is None or session > after))[:limit]
            return [SessionInfo(session, len(self._sessions[session]),
                                self._catalog[session].updated_at) for session in chosen]

        listed: list[SessionInfo] = yield page
        return listed

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        def read() -> datetime | None:
            return self._catalog[session_id].updated_at if self._sessions.get(session_id) \
                else None

        written: datetime | None = yield read
        return written

    @operation(write=True)
    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False,
                               owner: str | None = None) -> Operation[int]:
        check_cutoff(cutoff)
        check_text("owner", owner)

        def prune() -> int:
            old = [session for session, entry in self._catalog.items()
                   if entry.updated_at < cutoff and (owner is None or entry.owner == owner)]
            if not dry_run:
                for session in old:
                    self._sessions.pop(session, None)
                    del self._catalog[session]
            return len(old)

        pruned: int = yield prune
        return pruned

    @operation()
    def fetch_many(self, session_ids: Sequence[str]
                   ) -> Operation[dict[str, list[dict[str, Any]]]]:
        stored = yield lambda: self._stored_texts(session_ids)
        return {session: decode_records(texts) for session, texts in stored.items()}

    @operation(write=True)
    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]
                    ) -> Operation[None]:
        encoded = {session: self._encode(records) for session, records in batches.items()}
        yield lambda: self._store(encoded)

    @operation()
    def fetch_many_text(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        stored: dict[str, list[str]] = yield lambda: self._stored_texts(session_ids)
        return stored

    @operation(write=True)
    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        check_record_texts(batches)
        # A fake refuses what a real store would: text that is no JSON object, or NUL.
        encoded = {session: self._encode(decode_records(texts))
                   for session, texts in batches.items()}
        yield lambda: self._store(encoded)

    def _stored_texts(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        return {session: list(self._sessions[session]) for session in session_ids
                if self._sessions.get(session)}

    def _store(self, encoded: Mapping[str, list[str]]) -> None:
        now = datetime.now(UTC)
        for session, texts in encoded.items():
            if texts:
                self._sessions.setdefault(session, []).extend(texts)
                entry = self._catalog.get(session)
                if entry is None:
                    self._catalog[session] = _Entry(created_at=now, updated_at=now)
                else:
                    entry.updated_at = now

    # -- the session catalog ------------------------------------------------------------------

    def _summary(self, session_id: str) -> SessionSummary:
        entry = self._catalog[session_id]
        return SessionSummary(session_id, entry.owner, entry.title, dict(entry.metadata),
                              entry.created_at, entry.updated_at,
                              len(self._sessions.get(session_id, [])))

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        check_text("owner", owner)
        wanted = check_where(where)
        limit = check_limit(limit)
        after = read_cursor(cursor, newest_first, (str, str))
        position = None if after is None else (datetime.fromisoformat(after[0]), after[1])

        def page() -> list[SessionSummary]:
            candidates = self._catalog if owner is None else self._catalog.owned.get(owner, ())
            keyed = sorted(((self._catalog[session].updated_at, session)
                            for session in candidates
                            if metadata_matches(self._catalog[session].metadata, wanted)),
                           reverse=newest_first)
            if position is not None:
                keyed = [key for key in keyed
                         if (key < position if newest_first else key > position)]
            return [self._summary(session) for _, session in keyed[:limit + 1]]

        summaries: list[SessionSummary] = yield page
        return summary_page(summaries, limit, newest_first, lambda summary: summary,
                            lambda last: [last.updated_at.isoformat(), last.session_id])

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        found: dict[str, SessionSummary] = yield lambda: {
            session: self._summary(session) for session in session_ids
            if session in self._catalog}
        return found

    @operation(write=True)
    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None,
                       replace_metadata: bool = False,
                       only_if_unset: bool = False) -> Operation[SessionSummary]:
        check_update(owner, title, metadata)

        def update() -> SessionSummary:
            entry = self._catalog.get(session_id)
            if entry is None:
                now = datetime.now(UTC)
                entry = self._catalog[session_id] = _Entry(created_at=now, updated_at=now)
            if metadata is not None:
                merged = merge_metadata(entry.metadata, metadata, replace_metadata)
                check_metadata(merged)
                entry.metadata = json.loads(json.dumps(merged))
            if not isinstance(owner, Unchanged) and not (only_if_unset and entry.owner):
                self._catalog.set_owner(session_id, owner)
            if not isinstance(title, Unchanged) and not (only_if_unset and entry.title):
                entry.title = title
            return self._summary(session_id)

        summary: SessionSummary = yield update
        return summary

    @operation(write=True)
    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> Operation[ErasureReceipt]:
        ids = check_session_ids(session_ids)

        def erase() -> ErasureReceipt:
            receipt = ErasureReceipt(dry_run=dry_run)
            for session in ids:
                if session in self._catalog or self._sessions.get(session):
                    receipt.sessions += 1
                    receipt.messages += len(self._sessions.get(session, []))
                    if not dry_run:
                        self._sessions.pop(session, None)
                        self._catalog.pop(session, None)
            return receipt

        receipt: ErasureReceipt = yield erase
        return receipt

    @operation(write=True)
    def restore_summaries(self, summaries: Sequence[SessionSummary]) -> Operation[None]:
        for summary in summaries:
            checked_entry(summary)

        def restore() -> None:
            for summary in summaries:
                self._catalog[summary.session_id] = _Entry(
                    created_at=summary.created_at.astimezone(UTC),
                    updated_at=summary.updated_at.astimezone(UTC), owner=summary.owner,
                    title=summary.title, metadata=json.loads(json.dumps(summary.metadata)))

        yield restore

    def close(self) -> None:
        self.calls["close"] += 1
        super().close()


def _nothing() -> None:
    return None


class MemoryDriver(Driver[None, None, None]):
    """The memory backend's "connection": the call is counted, delayed by ``latency``, and
    fails if a failure was injected; each request is a function run under the store's lock.
    """

    native_async = True

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend

    @contextmanager
    def connection(self, call: Call) -> Iterator[None]:
        if self.backend.latency:
            time.sleep(self.backend.latency)
        self.backend.begin(call.operation)
        yield None

    def send(self, connection: None, request: Callable[[], Any]) -> Any:
        with self.backend._lock:
            return request()

    async def open_pool(self) -> None:
        return None

    @asynccontextmanager
    async def async_connection(self, pool: None, call: Call) -> AsyncIterator[None]:
        if self.backend.latency:
            await asyncio.sleep(self.backend.latency)
        self.backend.begin(call.operation)
        yield None

    async def asend(self, connection: None, request: Callable[[], Any]) -> Any:
        return self.send(connection, request)


def _nul_in(value: Any, where: str) -> str | None:
    """Where in ``value`` a string (or a key) holds NUL, e.g. ``data.content``; else None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"a key of {where}"
            found = _nul_in(item, f"{where}.{key}" if where != "record" else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            found = _nul_in(item, f"{where}[{position}]")
            if found is not None:
                return found
    return None


class _Store:
    """What equal ``SharedMemoryBackend`` instances share: the sessions and their lock."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[str]] = {}
        self.catalog = _Catalog()
        self.lock = threading.Lock()


_shared_stores: dict[MemoryBackend.Config, _Store] = {}
_shared_stores_lock = threading.Lock()


class SharedMemoryBackend(MemoryBackend):
    """The memory backend as ``backend="memory"`` builds it: equal options, one store.

    Two ``ChatHistory("s", backend="memory")`` (or a history and a
    ``history_factory("memory")``) see the same messages, for the life of the
    process, as two histories on one database would. Different options
    (``latency``, ``refuse_nul``) are different stores. Call counts and
    injected failures stay per instance. :func:`forget_shared_stores` empties
    them all.
    """

    def __init__(self, config: MemoryBackend.Config | None = None) -> None:
        super().__init__(config)
        with _shared_stores_lock:
            store = _shared_stores.setdefault(self.config, _Store())
        self._sessions, self._catalog, self._lock = store.sessions, store.catalog, store.lock


def forget_shared_stores() -> None:
    """Forget the stores ``backend="memory"`` shares: backends built from now on start empty.

    A backend already built keeps the store it has.
    """
    with _shared_stores_lock:
        _shared_stores.clear()


@hookimpl
def chathistory_backend() -> type[MemoryBackend]:
    return SharedMemoryBackend
