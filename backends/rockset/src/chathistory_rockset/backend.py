"""RocksetBackend: chat histories in Rockset, in langchain_community's layout.

One document per session: ``_id`` is the session id and the records are an
array under ``messages_key``, exactly as ``RocksetChatMessageHistory`` keeps
them, so either reads what the other wrote. The ``rockset`` SDK is imported
when a backend is built, never when this module is imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from chathistory import (
    BaseBackend,
    CollectionTimeoutError,
    ConfigError,
    RecordError,
    decode_record,
    encode_record,
    retry_transient,
)
from chathistory_rockset.config import RocksetConfig, is_rockset_host
from chathistory_rockset.errors import (
    RocksetApiError,
    RocksetSyncTimeoutError,
    RocksetTransientError,
    is_transient,
    translate,
)

__all__ = ["RocksetBackend"]

T = TypeVar("T")

_ALIAS = "records"
_FENCE_POLL_SECONDS = 0.005  # start-to-start: back to back once a round trip takes longer
_READY_POLL_SECONDS = (0.02, 0.5)  # first and longest wait between collection status checks


@dataclass
class _AppendAttempt:
    """What one append knows across its retries."""

    session_id: str
    batch: list[dict[str, Any]]
    maybe_applied: bool = False  # a try failed after the request may have been applied


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

    429, 5xx and dropped connections are retried with bounded backoff and then
    raised as :class:`~chathistory.BackendUnavailableError`; a refused API key
    raises :class:`~chathistory.PermissionDeniedError` at once.

    Example::

        backend = RocksetBackend.from_options(api_key="...", collection="chat")
        history = ChatHistory("user-42", backend=backend)
    """

    name = "rockset"
    Config: ClassVar[type[RocksetConfig]] = RocksetConfig
    config: RocksetConfig

    def __init__(self, config: RocksetConfig) -> None:
        super().__init__(config)
        self._owns_client = config.client is None
        self.client: Any = self._build_client() if config.client is None else config.client
        if not all(hasattr(self.client, part) for part in ("Collections", "Documents", "Queries")):
            raise ConfigError(
                f"backend {self.name!r}: option 'client' must be a rockset.RocksetClient, "
                f"not {type(self.client).__name__}"
            )
        location = f'"{config.workspace}"."{config.collection}"'
        field = f'"{config.messages_key}"'
        self._select_all_sql = f'SELECT {field} AS "{_ALIAS}" FROM {location} WHERE _id = :session'
        self._select_newest_sql = (
            f"SELECT SLICE({field}, GREATEST(ARRAY_LENGTH({field}) - :n + 1, 1)) "
            f'AS "{_ALIAS}" FROM {location} WHERE _id = :session'
        )
        self._append_path = f"/{config.messages_key}/-"
        # Documents this process is creating: one at a time, and a waiting
        # thread re-checks whether its session's document appeared meanwhile.
        self._create_lock = threading.Lock()
        self._documents_created = 0
        self._closed = False

    def _build_client(self) -> Any:
        from rockset import Configuration, RocksetClient  # type: ignore[import-untyped]

        assert self.config.api_key is not None  # the Config guarantees it
        api_key = self.config.api_key.get_secret_value()
        host = self.config.host
        # retries=False: urllib3 must never re-send a request by itself; every
        # retry is decided here, where a write is checked for before it is re-sent.
        configuration = Configuration(api_key=api_key, retries=False)
        try:
            if host is not None and is_rockset_host(host):
                client = RocksetClient(host=host, config=configuration)
            else:
                client = RocksetClient(config=configuration)
                if host is not None:
                    # RocksetClient only accepts *.rockset.com; any other server
                    # (an emulator on 127.0.0.1) is set on the configuration.
                    client.api_client.configuration.host = host
        except Exception as exc:  # InitializationException; its message holds no key
            raise ConfigError(f"backend {self.name!r}: cannot build a RocksetClient: {exc}"
                              ) from None
        return client

    # ---- requests --------------------------------------------------------------------

    def _request(self, action: str, call: Callable[[], T]) -> T:
        """One SDK call, its errors turned into chathistory errors."""
        try:
            return call()
        except Exception as exc:
            translated = translate(exc, action)
            if translated is exc:
                raise
            raise translated from exc

    def _retried(self, call: Callable[[], T]) -> T:
        return retry_transient(call, backend=self.name, is_transient=is_transient,
                               attempts=self.config.retry_attempts)

    def _call(self, action: str, call: Callable[[], T]) -> T:
        """A request that is safe to repeat, retried on transient failures."""
        return self._retried(lambda: self._request(action, call))

    def _timeout(self) -> dict[str, Any]:
        return {"_request_timeout": self.config.request_timeout}

    def _location(self) -> dict[str, str]:
        # Every call names the workspace: the SDK's default is "commons".
        return {"collection": self.config.collection, "workspace": self.config.workspace}

    def _send(self, action: str, call: Callable[[], T], *, retried: bool) -> T:
        """A request safe to repeat: retried here, or (inside an append's try) by the caller."""
        return self._call(action, call) if retried else self._request(action, call)

    def _query(self, sql: str, session_id: str, limit: int | None = None, *,
               retried: bool = True) -> list[Any]:
        from rockset.models import QueryParameter, QueryRequestSql  # type: ignore[import-untyped]

        parameters = [QueryParameter(name="session", type="string", value=session_id)]
        if limit is not None:
            parameters.append(QueryParameter(name="n", type="int", value=str(limit)))
        request = QueryRequestSql(query=sql, parameters=parameters)
        response = self._send("reading a session",
                              lambda: self.client.Queries.query(sql=request, **self._timeout()),
                              retried=retried)
        rows = response.get("results") or []
        if not rows:
            return []
        records = rows[0].get(_ALIAS)
        if records is None:
            return []
        if not isinstance(records, list):
            raise RocksetApiError(
                f"backend {self.name!r}: field {self.config.messages_key!r} of the session's "
                f"document is a {type(records).__name__}, not an array"
            )
        return records

    def _queryable_in_time(self, offset: str, action: str, *, retried: bool = True) -> bool:
        """Wait on the commit-offset fence until the write at ``offset`` is queryable.

        False if it is not within ``sync_timeout`` seconds.
        """
        deadline = time.monotonic() + self.config.sync_timeout
        while True:
            sent = time.monotonic()
            response = self._send(
                action,
                lambda: self.client.Collections.get_collection_offsets(
                    name=[offset], **self._location(), **self._timeout()),
                retried=retried,
            )
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
        if not self._queryable_in_time(offset, f"waiting for {what} to be queryable"):
            raise self._sync_timeout(offset, what)

    # ---- collection ------------------------------------------------------------------

    def _collection_status(self) -> str | None:
        try:
            response = self._call(
                "checking the collection",
                lambda: self.client.Collections.get(**self._location(), **self._timeout()))
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
                self._call(
                    "creating the collection",
                    lambda: self.client.Collections.create_s3_collection(
                        name=self.config.collection, workspace=self.config.workspace,
                        **self._timeout()),
                )
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

    def _write(self, attempt: _AppendAttempt, action: str, call: Callable[[], Any]) -> Any:
        """One write request; remember when a failure leaves it possibly applied."""
        try:
            return self._request(action, call)
        except RocksetTransientError as exc:
            attempt.maybe_applied = attempt.maybe_applied or exc.maybe_applied
            raise

    def _patch(self, attempt: _AppendAttempt) -> tuple[str | None, bool]:
        """PATCH the batch onto the end of the session's array: (last_offset, document missing)."""
        patch = [{"op": "ADD", "path": self._append_path, "value": record}
                 for record in attempt.batch]
        response = self._write(
            attempt, "appending to a session",
            lambda: self.client.Documents.patch_documents(
                data=[{"id": attempt.session_id, "patch": patch}],
                **self._location(), **self._timeout()),
        )
        status = response.data[0]
        if status.get("status") == "ERROR":
            error = status.get("error")
            type_ = error.get("type") if error is not None else None
            message = error.get("message") if error is not None else None
            if type_ == "NOTFOUND":
                return None, True
            raise RocksetApiError(
                f"backend {self.name!r}: Rockset refused the append: {message or 'ERROR'}",
                type=type_,
            )
        return response.get("last_offset"), False

    def _probe_offset(self, session_id: str) -> str:
        """The offset of a write that changes nothing: later than any earlier write."""
        response = self._request(
            "checking whether an append was stored",
            lambda: self.client.Documents.patch_documents(
                data=[{"id": session_id, "patch": []}], **self._location(), **self._timeout()),
        )
        offset: str = response.get("last_offset")
        return offset

    def _already_stored(self, attempt: _AppendAttempt) -> bool:
        """Fenced read: is the batch, whose write may have been applied, in the session?

        The offset of the failed write is unknown, so a write that changes
        nothing (an empty patch of the session's document) provides a later
        one: once the fence passes it, the failed write, if it was applied, is
        queryable too.
        """
        action = "checking whether an interrupted append was stored"
        if not self._queryable_in_time(self._probe_offset(attempt.session_id), action,
                                       retried=False):
            # Undecided: neither re-send nor give up yet; the next try checks again.
            raise RocksetTransientError(
                f"backend {self.name!r}: could not learn within sync_timeout="
                f"{self.config.sync_timeout}s whether an interrupted append was stored",
                maybe_applied=True,
            )
        stored = self._query(self._select_all_sql, attempt.session_id, retried=False)
        return _contains_batch(stored, attempt.batch)

    def _create_document(self, attempt: _AppendAttempt, seen_creations: int) -> str | None:
        """The session has no document yet: create it holding the batch.

        Adding a document replaces any document with that ``_id``, so two
        creators could clobber each other. In this process creators take turns,
        and one that finds the document created meanwhile appends instead. After
        creating, a fenced read checks that the batch survived a creator in
        another process, and appends it again if it did not.
        """
        with self._create_lock:
            if self._documents_created != seen_creations:
                offset, missing = self._patch(attempt)
                if not missing:
                    return offset
            response = self._write(
                attempt, "creating a session's document",
                lambda: self.client.Documents.add_documents(
                    data=[{"_id": attempt.session_id, self.config.messages_key: attempt.batch}],
                    **self._location(), **self._timeout()),
            )
            self._documents_created += 1
        # From here on the batch may be stored: a failed try is checked before a re-send.
        attempt.maybe_applied = True
        status = response.data[0]
        if status.get("status") == "ERROR":
            error = status.get("error")
            message = error.get("message") if error is not None else None
            raise RocksetApiError(
                f"backend {self.name!r}: Rockset refused the session's document: "
                f"{message or 'ERROR'}"
            )
        created: str | None = response.get("last_offset")
        if created is None:
            return None
        if not self._queryable_in_time(created, "checking a new session's document",
                                       retried=False):
            if self.config.sync:
                raise self._sync_timeout(created, "an append")
            return created  # stored; unverified against a creator elsewhere (see docs)
        stored = self._query(self._select_all_sql, attempt.session_id, retried=False)
        if stored[:len(attempt.batch)] == attempt.batch or _contains_batch(stored, attempt.batch):
            return created
        # Clobbered by a concurrent creator elsewhere: append to the survivor.
        offset, missing = self._patch(attempt)
        if missing:
            raise RocksetApiError(
                f"backend {self.name!r}: the session's document vanished while it was created"
            )
        return offset

    def _append_once(self, attempt: _AppendAttempt) -> str | None:
        if attempt.maybe_applied:
            if self._already_stored(attempt):
                return None  # stored, and already queryable: the probe was fenced
            attempt.maybe_applied = False
        seen_creations = self._documents_created
        offset, missing = self._patch(attempt)
        if missing:
            return self._create_document(attempt, seen_creations)
        return offset

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
        attempt = _AppendAttempt(session_id, batch)
        offset = self._retried(lambda: self._append_once(attempt))
        if self.config.sync and offset is not None:
            self._wait_until_queryable(offset, "an append")

    # ---- fetch and clear -------------------------------------------------------------

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``.

        One query. A session without a document is empty.
        """
        if limit == 0:
            return []
        if limit is None:
            stored = self._query(self._select_all_sql, session_id)
        else:
            stored = self._query(self._select_newest_sql, session_id, limit)
        records: list[dict[str, Any]] = []
        for record in stored:
            if not isinstance(record, dict):
                raise RocksetApiError(
                    f"backend {self.name!r}: the session holds a {type(record).__name__} "
                    "where a record (a JSON object) should be"
                )
            records.append(dict(record))
        return records

    def clear(self, session_id: str) -> None:
        """Empty the session: its document is replaced by one with an empty array.

        This is what langchain_community's ``clear`` does, so a history object of
        that class that is still in use keeps working. Other sessions are untouched.
        """
        response = self._call(
            "clearing a session",
            lambda: self.client.Documents.add_documents(
                data=[{"_id": session_id, self.config.messages_key: []}],
                **self._location(), **self._timeout()),
        )
        offset = response.get("last_offset")
        if self.config.sync and offset is not None:
            self._wait_until_queryable(offset, "a clear")

    def close(self) -> None:
        """Release the connections of a client the backend built; a given client stays open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self.client.api_client.rest_client.pool_manager.clear()
            self.client.api_client.executor.shutdown(wait=False)
