"""Collections, documents, write offsets and their visibility, behind one lock.

Every write request gets the next offset (``f1:0:0:0:<seq>``) and lands at once in
the collection's *latest* documents, which later writes build on. It reaches the
*visible* documents, the ones queries read, once the visibility delay has passed;
writes become visible strictly in offset order, and the committed offset is the
last one made visible. With a zero delay a write is visible before its response
is sent.

Documents are replaced, never mutated in place, so latest and visible documents
share structure and query rows can be serialised outside the lock.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ApiError, CollectionNotFound, invalid_input
from .patch import Operation, PatchFailed, apply_operations

NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-.]+")
_OFFSET = re.compile(r"f1:\d+:\d+:\d+:(\d+)")
_PERSIST_VERSION = 1

Doc = dict[str, Any]
T = TypeVar("T")


EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How a document's ``_event_time`` reads in query results: UTC, microseconds."""


def event_time() -> str:
    return dt.datetime.now(dt.UTC).strftime(EVENT_TIME_FORMAT)


def offset_string(seq: int) -> str:
    return f"f1:0:0:0:{seq}"


def offset_seq(offset: str) -> int:
    match = _OFFSET.fullmatch(offset)
    if match is None:
        raise invalid_input(f"'{offset}' is not an offset this server issued (f1:0:0:0:<n>)")
    return int(match.group(1))


def check_name(kind: str, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise invalid_input(
            f"{kind} name '{name}' is invalid: use only letters, digits, '_', '-' and '.'"
        )


@dataclass
class Collection:
    workspace: str
    name: str
    created_at: str
    ready_at: float  # time.monotonic() when it turns READY
    description: str | None = None
    retention_secs: int | None = None
    storage_compression_type: str | None = None
    latest: dict[str, Doc] = field(default_factory=dict)
    visible: dict[str, Doc] = field(default_factory=dict)

    def status(self, now: float) -> str:
        return "READY" if now >= self.ready_at else "CREATED"

    def to_api(self, status: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "workspace": self.workspace,
            "status": status,
            "created_at": self.created_at,
            "description": self.description,
            "sources": [],
            "retention_secs": self.retention_secs,
            "storage_compression_type": self.storage_compression_type,
            "stats": {"doc_count": len(self.visible)},
        }


@dataclass
class _Pending:
    seq: int
    visible_at: float
    collection: Collection
    changes: list[tuple[str, Doc | None]]  # (_id, new document or None for a delete)


@dataclass
class WriteResult:
    statuses: list[dict[str, Any]]
    last_offset: str


class Store:
    """All emulator state. Public methods take the lock; `_`-methods expect it held."""

    def __init__(
        self, *, ready_delay: float, visibility_delay: float, persist_path: Path | None
    ) -> None:
        self.lock = threading.RLock()
        self.ready_delay = ready_delay
        self.visibility_delay = visibility_delay
        self.persist_path = persist_path
        self._collections: dict[tuple[str, str], Collection] = {}
        self._seq = 0
        self._committed = 0
        self._pending: deque[_Pending] = deque()

    # ---- collections ----------------------------------------------------------------

    def create_collection(
        self,
        workspace: str,
        name: str,
        *,
        description: str | None = None,
        retention_secs: int | None = None,
        storage_compression_type: str | None = None,
    ) -> dict[str, Any]:
        check_name("workspace", workspace)
        check_name("collection", name)
        with self.lock:
            if (workspace, name) in self._collections:
                raise ApiError(
                    409,
                    "ALREADYEXISTS",
                    f"Collection '{name}' already exists in workspace '{workspace}'",
                )
            now = time.monotonic()
            collection = Collection(
                workspace=workspace,
                name=name,
                created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                ready_at=now + self.ready_delay,
                description=description,
                retention_secs=retention_secs,
                storage_compression_type=storage_compression_type,
            )
            self._collections[workspace, name] = collection
            self._save()
            return collection.to_api("CREATED")

    def get_collection(self, workspace: str, name: str) -> dict[str, Any]:
        with self.lock:
            self._advance()
            collection = self._collection(workspace, name)
            return collection.to_api(collection.status(time.monotonic()))

    def delete_collection(self, workspace: str, name: str) -> dict[str, Any]:
        with self.lock:
            self._advance()
            collection = self._collection(workspace, name)
            del self._collections[workspace, name]
            self._save()
            return collection.to_api("DELETED")

    def list_collections(self, workspace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            self._advance()
            now = time.monotonic()
            return [
                c.to_api(c.status(now))
                for (ws, _), c in sorted(self._collections.items())
                if workspace is None or ws == workspace
            ]

    def _collection(self, workspace: str, name: str) -> Collection:
        collection = self._collections.get((workspace, name))
        if collection is None:
            raise CollectionNotFound(workspace, name)
        return collection

    def _writable(self, workspace: str, name: str) -> Collection:
        collection = self._collection(workspace, name)
        if collection.status(time.monotonic()) != "READY":
            raise ApiError(
                400,
                "NOT_READY",
                f"Collection '{name}' in workspace '{workspace}' is not ready yet; "
                "wait until its status is READY",
            )
        return collection

    # ---- documents ------------------------------------------------------------------

    def add_documents(self, workspace: str, name: str, documents: list[Doc]) -> WriteResult:
        """Upsert whole documents (each a fresh object the store may keep)."""
        with self.lock:
            collection = self._writable(workspace, name)
            statuses: list[dict[str, Any]] = []
            changes: list[tuple[str, Doc | None]] = []
            for document in documents:
                doc_id = document.setdefault("_id", str(uuid.uuid4()))
                # Rockset stamps each added document with its ingest time unless given one.
                document.setdefault("_event_time", event_time())
                collection.latest[doc_id] = document
                changes.append((doc_id, document))
                statuses.append(_status(name, doc_id, "ADDED"))
            return self._commit_write(collection, changes, statuses)

    def patch_documents(
        self, workspace: str, name: str, patches: list[tuple[str, list[Operation]]]
    ) -> WriteResult:
        with self.lock:
            collection = self._writable(workspace, name)
            statuses: list[dict[str, Any]] = []
            changes: list[tuple[str, Doc | None]] = []
            for doc_id, operations in patches:
                current = collection.latest.get(doc_id)
                if current is None:
                    statuses.append(_error_status(name, doc_id, "document not found", "NOTFOUND"))
                    continue
                try:
                    patched = apply_operations(current, operations)
                except PatchFailed as exc:
                    statuses.append(_error_status(name, doc_id, str(exc), "INVALIDINPUT"))
                    continue
                collection.latest[doc_id] = patched
                changes.append((doc_id, patched))
                statuses.append(_status(name, doc_id, "PATCHED"))
            return self._commit_write(collection, changes, statuses)

    def delete_documents(self, workspace: str, name: str, ids: list[str]) -> WriteResult:
        with self.lock:
            collection = self._writable(workspace, name)
            changes: list[tuple[str, Doc | None]] = []
            statuses: list[dict[str, Any]] = []
            for doc_id in ids:
                collection.latest.pop(doc_id, None)
                changes.append((doc_id, None))
                statuses.append(_status(name, doc_id, "DELETED"))
            return self._commit_write(collection, changes, statuses)

    def _commit_write(
        self,
        collection: Collection,
        changes: list[tuple[str, Doc | None]],
        statuses: list[dict[str, Any]],
    ) -> WriteResult:
        self._seq += 1
        now = time.monotonic()
        self._pending.append(_Pending(self._seq, now + self.visibility_delay, collection, changes))
        self._advance(now)
        self._save()
        return WriteResult(statuses, offset_string(self._seq))

    def _advance(self, now: float | None = None) -> None:
        """Make every write whose delay has passed visible, in offset order."""
        now = time.monotonic() if now is None else now
        while self._pending and self._pending[0].visible_at <= now:
            pending = self._pending.popleft()
            for doc_id, document in pending.changes:
                if document is None:
                    pending.collection.visible.pop(doc_id, None)
                else:
                    pending.collection.visible[doc_id] = document
            self._committed = pending.seq
        if not self._pending:
            self._committed = self._seq

    # ---- offsets and queries --------------------------------------------------------

    def commit_fence(self, workspace: str, name: str, fences: list[str]) -> dict[str, Any]:
        seqs = [offset_seq(fence) for fence in fences]
        with self.lock:
            self._advance()
            self._collection(workspace, name)
            data: dict[str, Any] = {"passed": all(seq <= self._committed for seq in seqs)}
            if fences:
                data["fence"] = fences[seqs.index(max(seqs))]
            return {"data": data, "offsets": {"commit": offset_string(self._committed)}}

    def read(self, workspace: str, name: str, reader: Callable[[dict[str, Doc]], T]) -> T:
        """Run `reader` on a collection's visible documents, under the lock."""
        with self.lock:
            self._advance()
            return reader(self._collection(workspace, name).visible)

    def snapshot(self, workspace: str, name: str) -> dict[str, Doc]:
        """A deep copy of the latest documents (visible or not yet)."""
        with self.lock:
            return copy.deepcopy(self._collection(workspace, name).latest)

    # ---- lifecycle and persistence ----------------------------------------------------

    def reset(self, *, visibility_delay: float) -> None:
        with self.lock:
            self._collections.clear()
            self._pending.clear()
            self._seq = self._committed = 0
            self.visibility_delay = visibility_delay
            self._save()

    def load(self) -> None:
        """Load a persisted state, if the file exists; everything in it is READY and visible."""
        if self.persist_path is None or not self.persist_path.exists():
            return
        try:
            state = json.loads(self.persist_path.read_text(encoding="utf-8"))
            if state.get("version") != _PERSIST_VERSION:
                raise ValueError(f"unknown version {state.get('version')!r}")
            collections = {}
            for item in state["collections"]:
                docs = {doc["_id"]: doc for doc in item["documents"]}
                collection = Collection(
                    workspace=item["workspace"],
                    name=item["name"],
                    created_at=item["created_at"],
                    ready_at=0.0,
                    description=item.get("description"),
                    retention_secs=item.get("retention_secs"),
                    storage_compression_type=item.get("storage_compression_type"),
                    latest=docs,
                    visible=dict(docs),
                )
                collections[collection.workspace, collection.name] = collection
            seq = int(state["seq"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            message = f"cannot load emulator state from {self.persist_path}: {exc}"
            raise RuntimeError(message) from exc
        with self.lock:
            self._collections = collections
            self._pending.clear()
            self._seq = self._committed = seq

    def _save(self) -> None:
        if self.persist_path is None:
            return
        state = {
            "version": _PERSIST_VERSION,
            "seq": self._seq,
            "collections": [
                {
                    "workspace": c.workspace,
                    "name": c.name,
                    "created_at": c.created_at,
                    "description": c.description,
                    "retention_secs": c.retention_secs,
                    "storage_compression_type": c.storage_compression_type,
                    "documents": list(c.latest.values()),
                }
                for c in self._collections.values()
            ],
        }
        tmp = self.persist_path.with_name(self.persist_path.name + ".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self.persist_path)


def _status(collection: str, doc_id: str, status: str) -> dict[str, Any]:
    return {
        "_collection": collection,
        "_id": doc_id,
        "status": status,
        "patch_id": None,
        "error": None,
    }


def _error_status(collection: str, doc_id: str, message: str, type_: str) -> dict[str, Any]:
    result = _status(collection, doc_id, "ERROR")
    result["error"] = {"message": message, "type": type_}
    return result
