"""RocksetBackend: chat histories in Rockset, in langchain_community's layout.

One document per session: ``_id`` is the session id and the records are an
array under ``messages_key``, exactly as ``RocksetChatMessageHistory`` keeps
them, so either reads what the other wrote. Each append also sets the
document's ``last_write_key`` field to the time of the write, a field that
class neither reads nor needs. The ``rockset`` SDK is imported when a backend
is built, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, TypeVar

from chathistory import (
    BaseBackend,
    CollectionMissingError,
    CollectionTimeoutError,
    RecordError,
    decode_record,
    encode_record,
    retry_transient,
)
from chathistory.capabilities import SessionInfo, check_page_limit
from chathistory_rockset import errors
from chathistory_rockset.client import close_client, open_client
from chathistory_rockset.config import RocksetConfig
from chathistory_rockset.errors import RocksetApiError, RocksetSyncTimeoutError

__all__ = ["RocksetBackend"]

_ALIAS = "records"
_SESSION, _COUNT, _WRITTEN = "session", "count", "written"  # column aliases of session queries
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: string order is time order
MAX_IDS_PER_QUERY = 1000
"""fetch_many asks for at most this many sessions per query (one query for up to 1000)."""
T = TypeVar("T")
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

    Every operation runs through :func:`chathistory.retry_transient`: 429, 5xx
    and dropped connections are retried with bounded backoff and then raised as
    :class:`~chathistory.BackendUnavailableError`; a refused API key raises
    :class:`~chathistory.PermissionDeniedError` at once.

    Example::

        backend = RocksetBackend.from_options(api_key="...", collection="chat")
        history = ChatHistory("user-42", backend=backend)
    """

    name = "rockset"
    Config: ClassVar[type[RocksetConfig]] = RocksetConfig
    config: RocksetConfig

    def __init__(self, config: RocksetConfig) -> None:
        super().__init__(config)
        self.client: Any = open_client(config)
        # The core's one retry path, with this backend's hooks.
        self._retry_transient = partial(retry_transient, backend=self.name,
                                        is_transient=errors.is_transient,
                                        translate=errors.translate,
                                        attempts=config.retry_attempts)
        self._timeout = {"_request_timeout": config.request_timeout}
        # Every collection call names the workspace: the SDK's default is "commons".
        self._location = {"collection": config.collection, "workspace": config.workspace,
                          **self._timeout}
        location = f'"{config.workspace}"."{config.collection}"'
        field = f'"{config.messages_key}"'
        self._select_all_sql = f'SELECT {field} AS "{_ALIAS}" FROM {location} WHERE _id = :session'
        self._select_newest_sql = (
            f"SELECT SLICE({field}, GREATEST(ARRAY_LENGTH({field}) - :n + 1, 1)) "
            f'AS "{_ALIAS}" FROM {location} WHERE _id = :session'
        )
        self._append_path = f"/{config.messages_key}/-"
        written = f'"{config.last_write_key}"'
        self._page_sql = (
            f'SELECT _id AS "{_SESSION}", ARRAY_LENGTH({field}) AS "{_COUNT}", '
            f'{written} AS "{_WRITTEN}" FROM {location} WHERE _id > :after '
            f"AND ARRAY_LENGTH({field}) > 0 ORDER BY _id LIMIT {{limit}}"
        )
        self._written_sql = (
            f'SELECT ARRAY_LENGTH({field}) AS "{_COUNT}", {written} AS "{_WRITTEN}" '
            f"FROM {location} WHERE _id = :session"
        )
        self._many_sql = (
            f'SELECT _id AS "{_SESSION}", {field} AS "{_ALIAS}" FROM {location} '
            "WHERE _id IN ({ids})"
        )
        # Documents this process is creating: one at a time, and a waiting
        # thread re-checks whether its session's document appeared meanwhile.
        self._create_lock = threading.Lock()
        self._documents_created = 0

    # ---- single requests (raw SDK errors; the caller's retry translates them) ----------

    def _rows(self, sql: str, **values: str | int) -> list[Any]:
        """One query; ``values`` are bound as its string and int parameters."""
        from rockset.models import QueryParameter, QueryRequestSql  # type: ignore[import-untyped]

        parameters = [QueryParameter(name=name, type="int" if isinstance(value, int) else "string",
                                     value=str(value)) for name, value in values.items()]
        request = QueryRequestSql(query=sql, parameters=parameters)
        rows: list[Any] = self.client.Queries.query(sql=request, **self._timeout
                                                    ).get("results") or []
        return rows

    def _query(self, sql: str, session_id: str, limit: int | None = None
               ) -> list[dict[str, Any]]:
        values: dict[str, str | int] = {"session": session_id}
        if limit is not None:
            values["n"] = limit
        rows = self._rows(sql, **values)
        return self._records(rows[0].get(_ALIAS) if rows else None)

    def _records(self, records: Any) -> list[dict[str, Any]]:
        """A session's array as records, checked: a list of JSON objects (missing: empty)."""
        if records is None:
            return []
        if not isinstance(records, list):
            raise RocksetApiError(
                f"backend {self.name!r}: field {self.config.messages_key!r} of the session's "
                f"document is a {type(records).__name__}, not an array"
            )
        for record in records:
            if not isinstance(record, dict):
                raise RocksetApiError(
                    f"backend {self.name!r}: the session holds a {type(record).__name__} "
                    "where a record (a JSON object) should be"
                )
        return [dict(record) for record in records]

    def _fence_passes(self, offset: str) -> bool:
        """Poll the commit-offset fence until the write at ``offset`` is queryable.

        False if it is not within ``sync_timeout`` seconds.
        """
        deadline = time.monotonic() + self.config.sync_timeout
        while True:
            sent = time.monotonic()
            response = self.client.Collections.get_collection_offsets(name=[offset],
                                                                      **self._location)
            data = response.get("data")
            if data is not None and data.get("passed"):
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            # Polls start at most every _FENCE_POLL_SECONDS; a slow round trip is waiting enough.
            time.sleep(max(0.0, _FENCE_POLL_SECONDS - (now - sent)))

    def _sync_timeout(self, offset: str, what: str) -> RocksetSyncTimeoutError:
        return RocksetSyncTimeoutError(
            f"backend {self.name!r}: {what} in {self.config.workspace}."
            f"{self.config.collection} was stored, but Rockset did not make it queryable "
            f"within sync_timeout={self.config.sync_timeout}s (offset {offset}); "
            "do not send it again"
        )

    def _wait_until_queryable(self, offset: str, what: str) -> None:
        """``sync=True``: return once the write is queryable, or raise RocksetSyncTimeoutError."""
        if not self._retry_transient(lambda: self._fence_passes(offset)):
            raise self._sync_timeout(offset, what)

    # ---- collection ------------------------------------------------------------------

    def _collection_status(self) -> str | None:
        try:
            response = self._retry_transient(
                lambda: self.client.Collections.get(**self._location))
        except RocksetApiError as exc:
            if exc.status == 404:
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
        deadline = time.monotonic() + self.config.create_timeout
        status = self._collection_status()
        if status is None:
            try:
                self._retry_transient(lambda: self.client.Collections.create_s3_collection(
                    name=self.config.collection, workspace=self.config.workspace,
                    **self._timeout))
            except RocksetApiError as exc:
                if exc.status != 409:  # 409 ALREADYEXISTS: a concurrent creator won
                    raise
            status = "CREATED"
        wait = _READY_POLL_SECONDS[0]
        while status != "READY":
            if time.monotonic() >= deadline:
                raise CollectionTimeoutError(
                    f"backend {self.name!r}: collection {self.config.workspace}."
                    f"{self.config.collection} is {status or 'missing'}, not READY, after "
                    f"create_timeout={self.config.create_timeout}s"
                )
            time.sleep(min(wait, max(deadline - time.monotonic(), 0.0)))
            wait = min(wait * 2, _READY_POLL_SECONDS[1])
            status = self._collection_status()

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
                        raise RecordError(
                            "message_uuid_method must return a str or an int, not "
                            f"{type(value).__name__}"
                        )
                    extra["id"] = value
        return batch

    def _write_time(self) -> Any:
        """The patch operation setting the document's write time to now.

        The SDK types a patch value as an object; ``_check_type=False`` sends a
        string all the same (see the reference's note on PatchOperation).
        """
        from rockset.models import PatchOperation

        return PatchOperation(op="ADD", path=f"/{self.config.last_write_key}",
                              value=_format_time(datetime.now(UTC)), _check_type=False)

    def _patch(self, append: _Append) -> tuple[str | None, bool]:
        """PATCH the batch onto the end of the session's array: (last_offset, document missing)."""
        patch: list[Any] = [{"op": "ADD", "path": self._append_path, "value": record}
                            for record in append.batch]
        patch.append(self._write_time())
        response = self.client.Documents.patch_documents(
            data=[{"id": append.session_id, "patch": patch}], **self._location)
        status = response.data[0]
        if status.get("status") == "ERROR":
            error = status.get("error") or {}
            if error.get("type") == "NOTFOUND":
                return None, True
            raise RocksetApiError(f"backend {self.name!r}: Rockset refused the append: "
                                  f"{error.get('message') or 'ERROR'}", type=error.get("type"))
        return response.get("last_offset"), False

    def _already_stored(self, append: _Append) -> bool:
        """Fenced read: is the batch, whose write may have been applied, in the session?

        The offset of the failed write is unknown, so a write that changes
        nothing (an empty patch of the session's document) provides a later
        one: once the fence passes it, the failed write, if it was applied, is
        queryable too.
        """
        probe = self.client.Documents.patch_documents(
            data=[{"id": append.session_id, "patch": []}], **self._location)
        if not self._fence_passes(probe.get("last_offset")):
            # Undecided: neither re-send nor give up yet; the next try checks again.
            raise errors.RocksetTransientError(
                f"could not learn within sync_timeout={self.config.sync_timeout}s "
                "whether an interrupted append was stored"
            )
        return _contains_batch(self._query(self._select_all_sql, append.session_id), append.batch)

    def _create_document(self, append: _Append, seen_creations: int) -> str | None:
        """The session has no document yet: create it holding the batch.

        Adding a document replaces any document with that ``_id``, so two
        creators could clobber each other. In this process creators take turns,
        and one that finds the document created meanwhile appends instead. After
        creating, a fenced read checks that the batch survived a creator in
        another process, and appends it again if it did not.
        """
        with self._create_lock:
            if self._documents_created != seen_creations:
                offset, missing = self._patch(append)
                if not missing:
                    return offset
            response = self.client.Documents.add_documents(
                data=[{"_id": append.session_id, self.config.messages_key: append.batch,
                       self.config.last_write_key: _format_time(datetime.now(UTC))}],
                **self._location)
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
        if not self._fence_passes(created):
            if self.config.sync:
                raise self._sync_timeout(created, "an append")
            return created  # stored; unverified against a creator elsewhere (see docs)
        stored = self._query(self._select_all_sql, append.session_id)
        if stored[:len(append.batch)] == append.batch or _contains_batch(stored, append.batch):
            return created
        # Clobbered by a concurrent creator elsewhere: append to the survivor.
        offset, missing = self._patch(append)
        if missing:
            raise RocksetApiError(
                f"backend {self.name!r}: the session's document vanished while it was created"
            )
        return offset

    def _append_once(self, append: _Append) -> str | None:
        """One try of an append: its write's offset, or None when there is nothing to wait on."""
        if append.maybe_applied:
            if self._already_stored(append):
                return None  # stored, and already queryable: the probe was fenced
            append.maybe_applied = False
        seen_creations = self._documents_created
        try:
            offset, missing = self._patch(append)
            return self._create_document(append, seen_creations) if missing else offset
        except Exception as exc:
            # Every request here is a write of the batch, or follows one that succeeded
            # (which set maybe_applied): a failure may leave the batch stored.
            append.maybe_applied = append.maybe_applied or errors.maybe_applied(exc)
            raise

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
        if not batch:
            return
        append = _Append(session_id, batch)
        offset = self._retry_transient(lambda: self._append_once(append))
        if self.config.sync and offset is not None:
            self._wait_until_queryable(offset, "an append")

    # ---- fetch and clear -------------------------------------------------------------

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``.

        One query. A session without a document is empty.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        if limit == 0:
            return []
        sql = self._select_all_sql if limit is None else self._select_newest_sql
        return self._read(lambda: self._query(sql, session_id, limit))

    def clear(self, session_id: str) -> None:
        """Empty the session: its document is replaced by one with an empty array.

        This is what langchain_community's ``clear`` does, so a history object of
        that class that is still in use keeps working. Other sessions are untouched.
        """
        response = self._retry_transient(lambda: self.client.Documents.add_documents(
            data=[{"_id": session_id, self.config.messages_key: []}], **self._location))
        offset = response.get("last_offset")
        if self.config.sync and offset is not None:
            self._wait_until_queryable(offset, "a clear")

    # ---- reads that must not create anything -------------------------------------------

    def _read(self, call: Callable[[], T]) -> T:
        """Run a read query through the retry path; a missing collection is CollectionMissingError.

        Rockset answers a query on a missing collection with a 400 (a 404 for a
        missing workspace), like any bad query; only then is the collection
        looked up, so a read costs one request when it succeeds.
        """
        try:
            return self._retry_transient(call)
        except RocksetApiError as exc:
            if exc.status in (400, 404) and self._collection_status() is None:
                raise CollectionMissingError(
                    f"backend {self.name!r}: collection {self.config.workspace}."
                    f"{self.config.collection} does not exist (reading created nothing; "
                    "create_collection() creates it)"
                ) from exc
            raise

    def _session_row(self, row: Any, *, with_id: bool) -> SessionInfo:
        session_id = row.get(_SESSION) if with_id else ""
        count, written = row.get(_COUNT), row.get(_WRITTEN)
        if (not isinstance(session_id, str) or isinstance(count, bool)
                or not isinstance(count, int)):
            raise RocksetApiError(f"backend {self.name!r}: unexpected row in a session listing: "
                                  f"{sorted(row)}")
        return SessionInfo(session_id, count, self._parse_time(written))

    def _parse_time(self, value: Any) -> datetime | None:
        if value is None:
            return None  # written only by RocksetChatMessageHistory, which keeps no time
        try:
            return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)
        except (TypeError, ValueError):
            raise RocksetApiError(
                f"backend {self.name!r}: field {self.config.last_write_key!r} of a session's "
                f"document is not a time this backend wrote ({value!r:.40})") from None

    # ---- optional capabilities: ListsSessions, TracksWriteTimes, fetch_many ---------------

    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> list[SessionInfo]:
        """Up to ``limit`` sessions holding records, in id order, with ids after ``after``.

        One query over the collection: each document is a session, so no GROUP BY
        is needed; its count is ``ARRAY_LENGTH`` of the array, and its last write
        the ``last_write_key`` field (``None`` for a session only
        ``RocksetChatMessageHistory`` wrote: that class keeps no write time).

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        limit = check_page_limit(limit)
        sql = self._page_sql.format(limit=limit)
        rows = self._read(lambda: self._rows(sql, after=after or ""))
        return [self._session_row(row, with_id=True) for row in rows]

    def last_write(self, session_id: str) -> datetime | None:
        """When this backend last appended to the session (UTC); ``None`` if it holds no records.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        rows = self._read(lambda: self._rows(self._written_sql, session=session_id))
        if not rows:
            return None
        info = self._session_row(rows[0], with_id=False) if _COUNT in rows[0] else None
        return info.last_write if info is not None and info.messages else None

    def fetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The records of each of ``session_ids`` that has any, oldest first.

        One query (``WHERE _id IN (:s0, :s1, ...)``) per :data:`MAX_IDS_PER_QUERY` ids.

        Raises:
            CollectionMissingError: the collection does not exist (nothing is created).
        """
        wanted = list(dict.fromkeys(session_ids))
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
            part = wanted[start:start + MAX_IDS_PER_QUERY]
            values = {f"s{number}": session_id for number, session_id in enumerate(part)}
            sql = self._many_sql.format(ids=", ".join(f":{name}" for name in values))
            rows = self._read(partial(self._rows, sql, **values))
            asked = set(part)
            for row in rows:
                session_id = row.get(_SESSION)
                records = self._records(row.get(_ALIAS))
                if isinstance(session_id, str) and session_id in asked and records:
                    found[session_id] = records
        return {session_id: found[session_id] for session_id in wanted if session_id in found}

    async def alist_sessions(self, *, after: str | None = None, limit: int = 100
                             ) -> list[SessionInfo]:
        return await asyncio.to_thread(self.list_sessions, after=after, limit=limit)

    async def alast_write(self, session_id: str) -> datetime | None:
        return await asyncio.to_thread(self.last_write, session_id)

    async def afetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return await asyncio.to_thread(self.fetch_many, session_ids)

    def close(self) -> None:
        """Release the connections of a client the backend built; a given client stays open."""
        if self.config.client is None:
            close_client(self.client)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)
