"""RocksetBackend: chat histories in Rockset, in langchain_community's layout.

One document per session: ``_id`` is the session id and the records are an
array under ``messages_key``, exactly as ``RocksetChatMessageHistory`` keeps
them, so either reads what the other wrote. Each append also sets the
document's ``last_write_key`` field to the time of the write, a field that
class neither reads nor needs; the append that creates a document gives it
that time as its ``_event_time`` too. The session catalog is read-only here
(``ListsSummaries``): summaries come from those fields, and Rockset keeps no
owners, titles or metadata. The ``rockset`` SDK is imported when a backend
is built, never when this module is imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from chathistory import (
    BaseBackend,
    CollectionMissingError,
    CollectionTimeoutError,
    RecordError,
    decode_record,
    encode_record,
)
from chathistory.capabilities import SessionInfo
from chathistory.catalog import (
    MetadataValue,
    SessionSummary,
    SummaryPage,
    check_limit,
    check_session_ids,
    check_where,
    read_cursor,
    summary_page,
)
from chathistory.driver import Operation, Runner, operation
from chathistory.errors import CapabilityMissingError
from chathistory_rockset import errors
from chathistory_rockset.client import Request, RocksetDriver, set_field
from chathistory_rockset.config import RocksetConfig
from chathistory_rockset.errors import RocksetApiError, RocksetSyncTimeoutError

__all__ = ["RocksetBackend"]

_ALIAS = "records"
# column aliases of session queries
_SESSION, _COUNT, _WRITTEN, _CREATED = "session", "count", "written", "created"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: string order is time order
MAX_IDS_PER_QUERY = 1000
"""fetch_many asks for at most this many sessions per query (one query for up to 1000)."""
_FENCE_POLL_SECONDS = 0.005  # start-to-start: back to back once a round trip takes longer
_READY_POLL_SECONDS = (0.02, 0.5)  # first and longest wait between collection status checks


@dataclass
class _Append:
    """What one append knows across its tries."""

    session_id: str
    batch: list[dict[str, Any]]
    maybe_applied: bool = False  # a try failed after its write may have been applied


def _message_ids(record: Mapping[str, Any]) -> list[Any]:
    data = record.get("data")
    if not isinstance(data, Mapping):
        return []
    extra = data.get("additional_kwargs")
    ids = [data.get("id"), extra.get("id") if isinstance(extra, Mapping) else None]
    return [value for value in ids if value not in (None, "")]


def _contains_batch(stored: Sequence[Any], batch: Sequence[Mapping[str, Any]]) -> bool:
    """Whether an append of ``batch`` is visible in ``stored``.

    A batch carrying message ids is recognised anywhere (ids are unique, so a
    later writer's records after it do not hide it). A batch without ids is
    only recognised at the end: an identical earlier batch must not pass for it.
    """
    size = len(batch)
    if len(stored) < size:
        return False
    if stored[len(stored) - size:] == list(batch):
        return True
    if not any(_message_ids(record) for record in batch):
        return False
    return any(stored[start:start + size] == list(batch)
               for start in range(len(stored) - size, -1, -1))


def _now() -> str:
    return datetime.now(UTC).strftime(_TIME_FORMAT)


class RocksetBackend(BaseBackend):
    """Stores each session as one Rockset document; appends a whole batch with one PATCH.

    - ``append``: one ``patch_documents`` request adding the batch to the end of
      the session's array. A session's first batch creates its document (see
      :meth:`append` for how a concurrent creator is handled).
    - ``fetch``: one parameterised query; ``limit`` slices the newest records
      server side, so a long history is not shipped to read its tail.
    - ``clear``: replaces the session's document with an empty array, as
      langchain_community does, so its histories keep working.
    - ``sync=True``: after a write, waits on the write's ``last_offset`` with
      the commit-offset fence, so the next read sees it.

    The core's :class:`~chathistory.driver.Runner` runs every operation, its
    async twin in a worker thread: 429, 5xx and dropped connections are retried
    with backoff, then raised as :class:`~chathistory.BackendUnavailableError`;
    a refused API key raises :class:`~chathistory.PermissionDeniedError` at once.

    Example::

        backend = RocksetBackend.from_options(api_key="...", collection="chat")
        history = ChatHistory("user-42", backend=backend)
    """

    name = "rockset"
    Config: ClassVar[type[RocksetConfig]] = RocksetConfig
    config: RocksetConfig
    runner: Runner[Any, None, None]

    def __init__(self, config: RocksetConfig) -> None:
        super().__init__(config)
        self.driver = RocksetDriver(config)
        self.runner = Runner(self, self.driver, attempts=config.retry_attempts)
        # Every collection call names the workspace: the SDK's default is "commons".
        self._location = {"collection": config.collection, "workspace": config.workspace}
        location = f'"{config.workspace}"."{config.collection}"'
        field, written = f'"{config.messages_key}"', f'"{config.last_write_key}"'
        where_session = f"FROM {location} WHERE _id = :session"
        self._select_all_sql = f'SELECT {field} AS "{_ALIAS}" {where_session}'
        self._select_newest_sql = (f"SELECT SLICE({field}, GREATEST(ARRAY_LENGTH({field}) - :n "
                                   f'+ 1, 1)) AS "{_ALIAS}" {where_session}')
        self._page_sql = (
            f'SELECT _id AS "{_SESSION}", ARRAY_LENGTH({field}) AS "{_COUNT}", '
            f'{written} AS "{_WRITTEN}" FROM {location} WHERE _id > :after '
            f"AND ARRAY_LENGTH({field}) > 0 ORDER BY _id LIMIT {{limit}}"
        )
        self._written_sql = (f'SELECT ARRAY_LENGTH({field}) AS "{_COUNT}", {written} AS '
                             f'"{_WRITTEN}" {where_session}')
        summary_columns = (f'SELECT _id AS "{_SESSION}", ARRAY_LENGTH({field}) AS "{_COUNT}", '
                           f'{written} AS "{_WRITTEN}", _event_time AS "{_CREATED}" '
                           f"FROM {location} ")
        # Sessions only RocksetChatMessageHistory wrote have no write time: they sort as ''.
        key = f"COALESCE({written}, '')"
        self._summaries_sql = {
            newest_first: (summary_columns + f"WHERE ARRAY_LENGTH({field}) > 0 {{keyset}}"
                           f"ORDER BY {key} {order}, _id {order} LIMIT {{limit}}")
            for newest_first, order in ((True, "DESC"), (False, "ASC"))}
        self._keyset_sql = {
            newest_first: (f"AND ({key} {op} :key OR ({key} = :key AND _id {op} :after)) ")
            for newest_first, op in ((True, "<"), (False, ">"))}
        self._summaries_of_sql = summary_columns + "WHERE _id IN ({ids})"
        self._many_sql = (f'SELECT _id AS "{_SESSION}", {field} AS "{_ALIAS}" FROM {location} '
                          "WHERE _id IN ({ids})")
        # Documents this process is creating: one at a time, and a waiting
        # thread re-checks whether its session's document appeared meanwhile.
        self._create_lock = threading.Lock()
        self._documents_created = 0

    # ---- requests ----------------------------------------------------------------------

    def _collections(self, method: str, **arguments: Any) -> Request:
        return Request("Collections", method, {**self._location, **arguments})

    def _documents(self, method: str, data: list[Any]) -> Request:
        return Request("Documents", method, {**self._location, "data": data})

    def _rows(self, sql: str, **values: str | int) -> Operation[list[Any]]:
        """One query; ``values`` are bound as its string and int parameters.

        A query on a missing collection is answered like any bad one (400, or
        404 for a missing workspace); only then is the collection looked up, so
        a read costs one request when it succeeds.
        """
        from rockset.models import QueryParameter, QueryRequestSql  # type: ignore[import-untyped]

        parameters = [QueryParameter(name=name, type="int" if isinstance(value, int) else "string",
                                     value=str(value)) for name, value in values.items()]
        try:
            response = yield Request("Queries", "query", {
                "sql": QueryRequestSql(query=sql, parameters=parameters)})
        except Exception as error:
            if errors.status_of(error) in (400, 404) and (yield from self._status()) is None:
                raise CollectionMissingError(
                    f"backend {self.name!r}: collection {self.config.workspace}."
                    f"{self.config.collection} does not exist on Rockset at "
                    f"{self.driver.server} (reading created nothing; "
                    "create_collection() creates it)") from error
            raise
        rows: list[Any] = response.get("results") or []
        return rows

    def _records(self, records: Any) -> list[dict[str, Any]]:
        """A session's array as records, checked: a list of JSON objects (missing: empty)."""
        if records is None:
            return []
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise RocksetApiError(
                f"backend {self.name!r}: field {self.config.messages_key!r} of the session's "
                "document is not an array of records (JSON objects)")
        return [dict(record) for record in records]

    def _session(self, session_id: str, limit: int | None = None
                 ) -> Operation[list[dict[str, Any]]]:
        if limit is None:
            rows = yield from self._rows(self._select_all_sql, session=session_id)
        else:
            rows = yield from self._rows(self._select_newest_sql, session=session_id, n=limit)
        return self._records(rows[0].get(_ALIAS) if rows else None)

    def _fence_passes(self, offset: str) -> Operation[bool]:
        """Poll the commit-offset fence until the write at ``offset`` is queryable.

        False if it is not within ``sync_timeout`` seconds.
        """
        deadline = time.monotonic() + self.config.sync_timeout
        while True:
            sent = time.monotonic()
            response = yield self._collections("get_collection_offsets", name=[offset])
            data = response.get("data")
            if data is not None and data.get("passed"):
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            # Polls start at most every _FENCE_POLL_SECONDS; a slow round trip is waiting enough.
            time.sleep(max(0.0, _FENCE_POLL_SECONDS - (now - sent)))

    def _not_queryable(self, offset: str, what: str) -> RocksetSyncTimeoutError:
        """``sync=True``: the write at ``offset`` is stored, but its fence did not pass."""
        return RocksetSyncTimeoutError(
            f"backend {self.name!r}: {what} in {self.config.workspace}."
            f"{self.config.collection} was stored, but Rockset did not make it queryable "
            f"within sync_timeout={self.config.sync_timeout}s (offset {offset}); "
            "do not send it again")

    # ---- collection ------------------------------------------------------------------

    def _status(self) -> Operation[str | None]:
        try:
            response = yield self._collections("get")
        except Exception as error:
            if errors.status_of(error) == 404:
                return None
            raise
        status = response.data.get("status")
        return status if isinstance(status, str) else None

    def create_collection(self) -> None:
        """Create the collection (fed by the Write API) if it is missing; wait until READY.

        Raises:
            CollectionTimeoutError: not READY within ``create_timeout`` seconds.
            PermissionDeniedError: the API key was refused.
            BackendUnavailableError: Rockset could not be reached, even after retrying.
        """
        deadline = time.monotonic() + self.config.create_timeout  # for every try together
        self.runner.run("create_collection", lambda: self._create(deadline), write=True)

    def _create(self, deadline: float) -> Operation[None]:
        status = yield from self._status()
        if status is None:
            try:
                yield Request("Collections", "create_s3_collection", {
                    "name": self.config.collection, "workspace": self.config.workspace})
            except Exception as error:
                if errors.status_of(error) != 409:  # 409 ALREADYEXISTS: a concurrent creator won
                    raise
            status = "CREATED"
        wait = _READY_POLL_SECONDS[0]
        while status != "READY":
            if time.monotonic() >= deadline:
                raise CollectionTimeoutError(
                    f"backend {self.name!r}: collection {self.config.workspace}."
                    f"{self.config.collection} is {status or 'missing'}, not READY, after "
                    f"create_timeout={self.config.create_timeout}s")
            time.sleep(min(wait, max(deadline - time.monotonic(), 0.0)))
            wait = min(wait * 2, _READY_POLL_SECONDS[1])
            status = yield from self._status()

    # ---- append ----------------------------------------------------------------------

    def _prepare(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Encode every record before any I/O; return plain JSON copies to send."""
        batch = [decode_record(encode_record(record)) for record in records]
        make_id = self.config.message_uuid_method
        if make_id is not None:
            for record in batch:
                data = record.get("data")
                if not isinstance(data, dict):
                    continue
                extra = data.setdefault("additional_kwargs", {})
                if isinstance(extra, dict) and "id" not in extra:
                    value = make_id()
                    if isinstance(value, bool) or not isinstance(value, str | int):
                        raise RecordError("message_uuid_method must return a str or an int, "
                                          f"not {type(value).__name__}")
                    extra["id"] = value
        return batch

    def _patch(self, append: _Append) -> Operation[tuple[str | None, bool]]:
        """PATCH the batch onto the end of the session's array: (last_offset, document missing)."""
        patch: list[Any] = [{"op": "ADD", "path": f"/{self.config.messages_key}/-",
                             "value": record} for record in append.batch]
        patch.append(set_field(f"/{self.config.last_write_key}", _now()))
        response = yield self._documents("patch_documents",
                                         [{"id": append.session_id, "patch": patch}])
        status = response.data[0]
        if status.get("status") == "ERROR":
            error = status.get("error") or {}
            if error.get("type") == "NOTFOUND":
                return None, True
            raise RocksetApiError(f"backend {self.name!r}: Rockset refused the append: "
                                  f"{error.get('message') or 'ERROR'}", type=error.get("type"))
        return response.get("last_offset"), False

    def _already_stored(self, append: _Append) -> Operation[bool]:
        """Fenced read: is the batch, whose write may have been applied, in the session?

        The offset of the failed write is unknown, so a write that changes
        nothing (an empty patch of the session's document) provides a later
        one: once the fence passes it, the failed write, if it was applied, is
        queryable too.
        """
        probe = yield self._documents("patch_documents", [{"id": append.session_id, "patch": []}])
        if not (yield from self._fence_passes(probe.get("last_offset"))):
            # Undecided: neither re-send nor give up yet; the next try checks again.
            raise errors.RocksetTransientError(
                f"could not learn within sync_timeout={self.config.sync_timeout}s "
                "whether an interrupted append was stored")
        return _contains_batch((yield from self._session(append.session_id)), append.batch)

    def _create_document(self, append: _Append, seen_creations: int
                         ) -> Operation[str | None]:
        """The session has no document yet: create it holding the batch.

        Adding a document replaces any document with that ``_id``, so two
        creators could clobber each other. In this process creators take turns,
        and one that finds the document created meanwhile appends instead. After
        creating, a fenced read checks that the batch survived a creator in
        another process, and appends it again if it did not.
        """
        with self._create_lock:
            if self._documents_created != seen_creations:
                offset, missing = yield from self._patch(append)
                if not missing:
                    return offset
            now = _now()  # its _event_time too: the session's creation is its first write
            response = yield self._documents("add_documents", [{
                "_id": append.session_id, self.config.messages_key: append.batch,
                self.config.last_write_key: now, "_event_time": now}])
            self._documents_created += 1
        # From here on the batch may be stored: a failed try is checked before a re-send.
        append.maybe_applied = True
        status = response.data[0]
        if status.get("status") == "ERROR":
            error = status.get("error") or {}
            raise RocksetApiError(f"backend {self.name!r}: Rockset refused the session's "
                                  f"document: {error.get('message') or 'ERROR'}")
        created: str | None = response.get("last_offset")
        if created is None:
            return None
        if not (yield from self._fence_passes(created)):
            if self.config.sync:
                raise self._not_queryable(created, "an append")
            return created  # stored; unverified against a creator elsewhere (see docs)
        stored = yield from self._session(append.session_id)
        if stored[:len(append.batch)] == append.batch or _contains_batch(stored, append.batch):
            return created
        # Clobbered by a concurrent creator elsewhere: append to the survivor.
        offset, missing = yield from self._patch(append)
        if missing:
            raise RocksetApiError(
                f"backend {self.name!r}: the session's document vanished while it was created")
        return offset

    def _append_try(self, append: _Append) -> Operation[str | None]:
        """One try of an append, knowing what the earlier tries did: the offset to wait on."""
        if append.maybe_applied:
            if (yield from self._already_stored(append)):
                return None  # stored, and already queryable: the probe was fenced
            append.maybe_applied = False
        seen_creations = self._documents_created
        try:
            offset, missing = yield from self._patch(append)
            return (yield from self._create_document(append, seen_creations)) if missing else offset
        except Exception as exc:
            # Every request here is a write of the batch, or follows one that succeeded
            # (which set maybe_applied): a failure may leave the batch stored.
            append.maybe_applied = append.maybe_applied or errors.maybe_applied(exc)
            raise

    def _write(self, name: str, write: Callable[[], Operation[str | None]], what: str,
               records: int | None = None) -> None:
        """Run a write (its tries), then with ``sync=True`` wait on the offset it returned.

        A failed wait is retried by waiting again: the write is never sent again.
        """
        offsets: list[str | None] = []

        def steps() -> Operation[None]:
            if not offsets:
                offsets.append((yield from write()))
            if (self.config.sync and offsets[0] is not None
                    and not (yield from self._fence_passes(offsets[0]))):
                raise self._not_queryable(offsets[0], what)

        self.runner.run(name, steps, write=True, sessions=1, records=records)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Append ``records`` to the session with one PATCH request.

        A retried write is never stored twice: when a failed request may have
        been applied (the connection dropped after sending), the session is
        read behind a commit fence before the batch is sent again.

        Raises:
            RecordError: a record is not JSON; nothing was sent.
            PermissionDeniedError: the API key was refused.
            BackendUnavailableError: Rockset could not be reached, even after retrying.
            RocksetSyncTimeoutError: with ``sync=True``, stored but not queryable in time.
        """
        batch = self._prepare(records)
        if batch:
            append = _Append(session_id, batch)  # one per append, seen by each of its tries
            self._write("append", lambda: self._append_try(append), "an append",
                        records=len(batch))

    # ---- fetch and clear -------------------------------------------------------------

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``.

        One query. A session without a document is empty.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        if limit == 0:
            return []
        return (yield from self._session(session_id, limit))

    def clear(self, session_id: str) -> None:
        """Empty the session: its document is replaced by one with an empty array.

        This is what langchain_community's ``clear`` does, so a history object of
        that class that is still in use keeps working. Other sessions are untouched.
        """
        def replace() -> Operation[str | None]:
            response = yield self._documents("add_documents",
                                             [{"_id": session_id, self.config.messages_key: []}])
            offset: str | None = response.get("last_offset")
            return offset

        self._write("clear", replace, "a clear")

    # ---- optional capabilities: ListsSessions, TracksWriteTimes, FetchesInBulk -----------

    def _session_info(self, row: Any, session_id: Any) -> SessionInfo:
        count, written = row.get(_COUNT), row.get(_WRITTEN)
        if (not isinstance(session_id, str) or isinstance(count, bool)
                or not isinstance(count, int)):
            raise RocksetApiError(f"backend {self.name!r}: unexpected row in a session listing: "
                                  f"{sorted(row)}")
        if written is None:  # written only by RocksetChatMessageHistory, which keeps no time
            return SessionInfo(session_id, count, None)
        try:
            return SessionInfo(session_id, count,
                               datetime.strptime(written, _TIME_FORMAT).replace(tzinfo=UTC))
        except (TypeError, ValueError):
            raise RocksetApiError(
                f"backend {self.name!r}: field {self.config.last_write_key!r} of a session's "
                f"document is not a time this backend wrote ({written!r:.40})") from None

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        """Up to ``limit`` sessions holding records, in id order, with ids after ``after``.

        One query over the collection: each document is a session, so no GROUP BY
        is needed; its count is ``ARRAY_LENGTH`` of the array, and its last write
        the ``last_write_key`` field (``None`` for a session only
        ``RocksetChatMessageHistory`` wrote: that class keeps no write time).

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        sql = self._page_sql.format(limit=check_limit(limit))
        rows = yield from self._rows(sql, after=after or "")
        return [self._session_info(row, row.get(_SESSION)) for row in rows]

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        """When this backend last appended to the session (UTC); ``None`` if it holds no records.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        rows = yield from self._rows(self._written_sql, session=session_id)
        if not rows or _COUNT not in rows[0]:
            return None
        info = self._session_info(rows[0], session_id)
        return info.last_write if info.messages else None

    @operation()
    def fetch_many(self, session_ids: Sequence[str]
                   ) -> Operation[dict[str, list[dict[str, Any]]]]:
        """The records of each of ``session_ids`` that has any, oldest first.

        One query (``WHERE _id IN (:s0, :s1, ...)``) per :data:`MAX_IDS_PER_QUERY` ids.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        wanted = check_session_ids(session_ids)
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
            part = wanted[start:start + MAX_IDS_PER_QUERY]
            values = {f"s{number}": session_id for number, session_id in enumerate(part)}
            sql = self._many_sql.format(ids=", ".join(f":{name}" for name in values))
            asked = set(part)
            for row in (yield from self._rows(sql, **values)):
                session_id, records = row.get(_SESSION), self._records(row.get(_ALIAS))
                if isinstance(session_id, str) and session_id in asked and records:
                    found[session_id] = records
        return {session_id: found[session_id] for session_id in wanted if session_id in found}

    # ---- optional capability: ListsSummaries (the catalog's read side) -------------------

    def _summary(self, row: Any) -> SessionSummary:
        """A row of a summaries query: times from the document, no owner, title or metadata.

        ``updated_at`` is the last write this backend made; ``created_at`` the
        document's ``_event_time`` (set when its document was made: its first
        append, or its last clear). A session only ``RocksetChatMessageHistory``
        wrote has no write time: both are its ``_event_time``.
        """
        info = self._session_info(row, row.get(_SESSION))
        created = row.get(_CREATED)
        created_at = self._event_time(created) if created is not None else None
        updated_at = info.last_write or created_at
        if updated_at is None:
            raise RocksetApiError(f"backend {self.name!r}: session {info.session_id!r} has "
                                  "neither a write time nor an _event_time")
        return SessionSummary(info.session_id, None, None, {}, created_at or updated_at,
                              updated_at, info.messages or 0)

    def _event_time(self, value: Any) -> datetime:
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except (TypeError, ValueError):
            raise RocksetApiError(f"backend {self.name!r}: a document's _event_time is not a "
                                  f"time ({value!r:.40})") from None

    def _cannot_filter(self, owner: str | None, where: Mapping[str, MetadataValue]
                       ) -> CapabilityMissingError:
        asked = "an owner" if owner is not None else "metadata"
        return CapabilityMissingError(
            f"backend {self.name!r} cannot list sessions by {asked}: Rockset shut down in "
            "2024 and this backend only reads what its collections hold, which has no owners, "
            "titles or metadata. Copy the sessions to a backend that keeps a catalog "
            f"(chathistory copy -b {self.name} -o collection={self.config.collection} ... "
            "--to sqlite, or --to postgres) and list them there")

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        """A page of the sessions holding records, by last write then id, with a cursor.

        One query, keyset-paged on (write time, ``_id``): a session not written
        during the listing appears exactly once. Owners, titles and metadata
        are not kept in Rockset, so summaries carry ``None``, ``None`` and ``{}``.

        Raises:
            CapabilityMissingError: ``owner`` or ``where`` was given (see the message's
                way out: copy to a backend that keeps a catalog).
            ValueError: a bad limit, filter or cursor.
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        check_limit(limit)
        wanted = check_where(where)
        position = read_cursor(cursor, newest_first, (str, str))
        if owner is not None or wanted:
            raise self._cannot_filter(owner, wanted)
        values: dict[str, str | int] = {}
        keyset = ""
        if position is not None:
            values = {"key": position[0], "after": position[1]}
            keyset = self._keyset_sql[newest_first]
        sql = self._summaries_sql[newest_first].format(keyset=keyset, limit=limit + 1)
        rows = yield from self._rows(sql, **values)
        return summary_page(rows, limit, newest_first, self._summary, lambda row: [
            row.get(_WRITTEN) or "", self._summary(row).session_id])

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        """The summaries of those of ``session_ids`` holding records: one query per 1000 ids.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        wanted = check_session_ids(session_ids)
        found: dict[str, SessionSummary] = {}
        for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
            part = wanted[start:start + MAX_IDS_PER_QUERY]
            values = {f"s{number}": session_id for number, session_id in enumerate(part)}
            sql = self._summaries_of_sql.format(ids=", ".join(f":{name}" for name in values))
            for row in (yield from self._rows(sql, **values)):
                if row.get(_SESSION) in values.values() and row.get(_COUNT):
                    summary = self._summary(row)
                    found[summary.session_id] = summary
        return {session_id: found[session_id] for session_id in wanted if session_id in found}

    afetch = fetch.async_twin
    alist_sessions = list_sessions.async_twin
    alast_write = last_write.async_twin
    afetch_many = fetch_many.async_twin
    alist_summaries = list_summaries.async_twin
    asession_summaries = session_summaries.async_twin
