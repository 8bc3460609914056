"""The REST routes: request validation, the calls into the store, and response shapes.

Everything here is independent of HTTP plumbing: `dispatch` turns a method, a path
and a raw body into a status and a JSON object, raising nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from . import sql
from .errors import ApiError, CollectionNotFound, error_body, invalid_input, query_error
from .patch import InvalidPatch, Operation, parse_operation
from .state import EVENT_TIME_FORMAT, Store, WriteResult

log = logging.getLogger(__name__)

MAX_DOCUMENTS_PER_REQUEST = 20_000
COMPRESSION_TYPES = ("LZ4", "ZSTD")


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


Handler = Callable[[Store, Mapping[str, str], bytes], dict[str, Any]]

_COLLECTIONS = r"/v1/orgs/self/ws/(?P<ws>[^/]+)/collections"
_COLLECTION = _COLLECTIONS + r"/(?P<c>[^/]+)"
_DOCS = re.compile(_COLLECTION + "/docs")


def is_write(method: str, path: str) -> bool:
    """Whether a request is a document write (add, patch or delete)."""
    return method in ("POST", "PATCH", "DELETE") and _DOCS.fullmatch(path.rstrip("/")) is not None


def dispatch(store: Store, method: str, path: str, body: bytes) -> Response:
    try:
        for pattern, handlers in _ROUTES:
            match = pattern.fullmatch(path.rstrip("/") or "/")
            if match is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                allowed = ", ".join(sorted(handlers))
                message = f"{method} is not allowed on {path} (allowed: {allowed})"
                raise ApiError(405, "METHODNOTALLOWED", message)
            args = {key: unquote(value) for key, value in match.groupdict().items()}
            return Response(200, handler(store, args, body))
        raise ApiError(404, "NOTFOUND", f"No such API endpoint: {method} {path}")
    except ApiError as exc:
        return Response(exc.status, exc.body())
    except Exception as exc:  # a bug in the emulator: say so, without a traceback in the body
        log.exception("emulator error on %s %s", method, path)
        message = f"Internal emulator error: {type(exc).__name__}: {exc}"
        return Response(500, error_body(message, "INTERNALERROR"))


# ---- body parsing ------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_object(body: bytes, *, required: bool = True) -> dict[str, Any]:
    if not body.strip():
        if required:
            raise invalid_input("Request body is empty; expected a JSON object")
        return {}
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_input(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid_input("Request body must be a JSON object")
    return value


def _data_list(body: bytes) -> list[Any]:
    data = _json_object(body).get("data")
    if not isinstance(data, list):
        raise invalid_input("Request body needs a 'data' field holding a list")
    if len(data) > MAX_DOCUMENTS_PER_REQUEST:
        raise invalid_input(f"Too many documents in one request (max {MAX_DOCUMENTS_PER_REQUEST})")
    return data


def _document_id(item: Any, what: str) -> str:
    if not isinstance(item, dict):
        raise invalid_input(f"Each {what} must be a JSON object")
    doc_id = item.get("_id")
    if not isinstance(doc_id, str) or not doc_id:
        raise invalid_input(f"Each {what} needs a non-empty string '_id'")
    return doc_id


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise invalid_input(f"'{key}' must be a {kind.__name__}")
    return value


# ---- collections -------------------------------------------------------------------------


def _list_all(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    return {"data": store.list_collections()}


def _list_workspace(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    return {"data": store.list_collections(args["ws"])}


def _create(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    request = _json_object(body)
    name = request.get("name")
    if not isinstance(name, str):
        raise invalid_input("Request body needs a string 'name'")
    if request.get("sources"):
        raise invalid_input(
            "The emulator only supports collections fed by the Write API (no 'sources')"
        )
    retention = _optional(request, "retention_secs", int)
    if retention is not None and not 3600 <= retention <= 315359999:
        raise invalid_input("'retention_secs' must be between 3600 and 315359999")
    compression = _optional(request, "storage_compression_type", str)
    if compression is not None and compression not in COMPRESSION_TYPES:
        allowed = ", ".join(COMPRESSION_TYPES)
        raise invalid_input(f"'storage_compression_type' must be one of {allowed}")
    collection = store.create_collection(
        args["ws"],
        name,
        description=_optional(request, "description", str),
        retention_secs=retention,
        storage_compression_type=compression,
    )
    return {"data": collection}


def _get(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    return {"data": store.get_collection(args["ws"], args["c"])}


def _delete(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    return {"data": store.delete_collection(args["ws"], args["c"])}


# ---- documents ---------------------------------------------------------------------------


def _write_response(result: WriteResult) -> dict[str, Any]:
    return {"data": result.statuses, "last_offset": result.last_offset}


def _add(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    documents = _data_list(body)
    for document in documents:
        if not isinstance(document, dict):
            raise invalid_input("Each document in 'data' must be a JSON object")
        if "_id" in document and (not isinstance(document["_id"], str) or not document["_id"]):
            raise invalid_input("A document's '_id' must be a non-empty string")
        if "_event_time" in document:
            _check_event_time(document["_event_time"])
    return _write_response(store.add_documents(args["ws"], args["c"], documents))


def _check_event_time(value: Any) -> None:
    """Rockset also takes other forms (microseconds, other offsets); the emulator only this one."""
    try:
        if not isinstance(value, str):
            raise ValueError
        dt.datetime.strptime(value, EVENT_TIME_FORMAT)
    except ValueError:
        raise invalid_input(
            "The emulator takes a document's '_event_time' only as UTC ISO 8601 text with "
            f"microseconds ('2024-01-31T12:00:00.000000Z'), not {value!r:.40}") from None


def _patch(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    patches: list[tuple[str, list[Operation]]] = []
    for item in _data_list(body):
        doc_id = _document_id(item, "patch document")
        operations = item.get("patch")
        if not isinstance(operations, list):
            raise invalid_input(f"Patch document '{doc_id}' needs a 'patch' list of operations")
        try:
            patches.append((doc_id, [parse_operation(op) for op in operations]))
        except InvalidPatch as exc:
            raise invalid_input(f"Invalid patch for document '{doc_id}': {exc}") from None
    return _write_response(store.patch_documents(args["ws"], args["c"], patches))


def _delete_documents(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    ids = [_document_id(item, "entry of 'data'") for item in _data_list(body)]
    return _write_response(store.delete_documents(args["ws"], args["c"], ids))


def _commit(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    names = _json_object(body, required=False).get("name")
    if names is None:
        names = []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise invalid_input("'name' must be a list of offset strings")
    return store.commit_fence(args["ws"], args["c"], names)


# ---- queries -----------------------------------------------------------------------------


def _query(store: Store, args: Mapping[str, str], body: bytes) -> dict[str, Any]:
    started = time.monotonic()
    request = _json_object(body).get("sql")
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        raise invalid_input("Request body needs 'sql': {'query': <string>, 'parameters': [...]}")
    statement = sql.parse(request["query"])
    params = sql.bind_parameters(request.get("parameters"))
    try:
        rows = store.read(
            statement.workspace,
            statement.collection,
            lambda documents: sql.execute(statement, params, documents),
        )
    except CollectionNotFound as exc:
        raise query_error(exc.message) from None
    limit = request.get("default_row_limit")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        rows = rows[:limit]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return {
        "query_id": str(uuid.uuid4()),
        "collections": [statement.location],
        "results": rows,
        "results_total_doc_count": len(rows),
        "stats": {"elapsed_time_ms": elapsed_ms, "throttled_time_micros": 0},
        "column_fields": [{"name": name, "type": ""} for name in columns],
        "warnings": [],
        "query_errors": [],
    }


_ROUTES: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
    (re.compile(r"/v1/orgs/self/collections"), {"GET": _list_all}),
    (re.compile(_COLLECTIONS), {"GET": _list_workspace, "POST": _create}),
    (re.compile(_COLLECTION), {"GET": _get, "DELETE": _delete}),
    (_DOCS, {"POST": _add, "PATCH": _patch, "DELETE": _delete_documents}),
    (re.compile(_COLLECTION + "/offsets/commit"), {"POST": _commit}),
    (re.compile(r"/v1/orgs/self/queries"), {"POST": _query}),
]
