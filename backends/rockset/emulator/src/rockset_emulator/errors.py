"""Rockset's error shape: the ``ErrorModel`` body and the exception that carries it."""

from __future__ import annotations

import uuid
from typing import Any

# The `type` values the rockset 2.1.2 SDK accepts on an ErrorModel (it rejects any other).
# fmt: off
ERROR_TYPES = frozenset(
    {
        "AUTHEXCEPTION", "VERSIONEXCEPTION", "INTERNALERROR", "INVALIDINPUT",
        "NOTIMPLEMENTEDYET", "RESOURCEEXCEEDED", "ALREADYEXISTS", "METHODNOTALLOWED",
        "NOTACCEPTABLE", "UNSUPPORTEDMEDIATYPE", "NOTFOUND", "DEPENDENTRESOURCES",
        "QUERY_ERROR", "NOT_READY", "FORBIDDEN", "QUERY_TIMEOUT", "CONNECTION_ERROR",
        "CONTENTTOOLARGE", "CREATING", "BADREQUEST", "SERVICEUNAVAILABLE", "CONFLICT",
        "RATELIMITEXCEEDED", "QUERY_CANCELLED", "CLIENT_CONNECTION_ERROR",
    }
)
# fmt: on

_TYPE_BY_STATUS = {
    400: "BADREQUEST",
    401: "AUTHEXCEPTION",
    403: "FORBIDDEN",
    404: "NOTFOUND",
    405: "METHODNOTALLOWED",
    406: "NOTACCEPTABLE",
    408: "QUERY_TIMEOUT",
    409: "CONFLICT",
    413: "CONTENTTOOLARGE",
    415: "UNSUPPORTEDMEDIATYPE",
    429: "RATELIMITEXCEEDED",
    500: "INTERNALERROR",
    501: "NOTIMPLEMENTEDYET",
}


def type_for_status(status: int) -> str:
    """The ErrorModel type a Rockset server would send with an HTTP status."""
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "SERVICEUNAVAILABLE" if status >= 500 else "BADREQUEST"


def error_body(message: str, type_: str) -> dict[str, Any]:
    """A complete ErrorModel JSON object."""
    if type_ not in ERROR_TYPES:
        raise ValueError(f"{type_!r} is not an ErrorModel type the SDK accepts")
    return {
        "message": message,
        "type": type_,
        "line": None,
        "column": None,
        "trace_id": uuid.uuid4().hex,
        "error_id": uuid.uuid4().hex,
        "query_id": None,
    }


class ApiError(Exception):
    """An error answered as an HTTP status with an ErrorModel body."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        if type_ not in ERROR_TYPES:
            raise ValueError(f"{type_!r} is not an ErrorModel type the SDK accepts")
        self.status = status
        self.type = type_
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type)


def invalid_input(message: str) -> ApiError:
    return ApiError(400, "INVALIDINPUT", message)


def query_error(message: str) -> ApiError:
    return ApiError(400, "QUERY_ERROR", message)


class CollectionNotFound(ApiError):
    """404 for a missing collection; queries turn it into a 400 QUERY_ERROR."""

    def __init__(self, workspace: str, collection: str) -> None:
        super().__init__(
            404, "NOTFOUND", f"Collection '{collection}' not found in workspace '{workspace}'"
        )
        self.workspace = workspace
        self.collection = collection
