"""The Rockset backend's errors, all within :mod:`chathistory.errors`, and SDK error translation.

The ``rockset`` SDK and ``urllib3`` are imported inside :func:`translate`, never
at module import, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from typing import Any

from chathistory import BackendUnavailableError, ChatHistoryError, PermissionDeniedError

__all__ = [
    "RocksetApiError",
    "RocksetSyncTimeoutError",
    "RocksetTransientError",
    "is_transient",
    "translate",
]

BACKEND = "rockset"

# Statuses that mean the server refused the request without applying it.
_REFUSED_STATUSES = frozenset({408, 429, 503})


class RocksetApiError(ChatHistoryError):
    """Rockset answered with an error that retrying will not cure (a 400, a 404...).

    Attributes:
        status: The HTTP status, or ``None`` for a per-document error inside a 200.
        type: Rockset's error type (``NOTFOUND``, ``QUERY_ERROR``...) when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type


class RocksetTransientError(BackendUnavailableError):
    """One request failed in a way worth retrying: 429, 5xx, a dropped or timed-out connection.

    ``maybe_applied`` is true when the request may have reached the server and
    been applied before the failure (a connection dropped after sending, a 500):
    a write must then be checked for before it is sent again.
    """

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class RocksetSyncTimeoutError(ChatHistoryError, TimeoutError):
    """With ``sync=True``: a write was stored, but Rockset did not report it queryable in time.

    The write is not lost and must not be sent again; it will become visible
    once Rockset catches up.
    """


def _body_details(body: Any) -> tuple[str | None, str | None]:
    """Rockset's ErrorModel ``message`` and ``type`` from an error body, when it has them."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return None, None
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200], None
    if not isinstance(parsed, dict):
        return None, None
    message, type_ = parsed.get("message"), parsed.get("type")
    return (message if isinstance(message, str) else None,
            type_ if isinstance(type_, str) else None)


def translate(error: BaseException, action: str) -> BaseException:
    """The :mod:`chathistory.errors` error for an exception the SDK raised while ``action``.

    Never includes the API key: request headers are not part of any message.
    Returns ``error`` itself when it is not an SDK or HTTP error.
    """
    import urllib3.exceptions  # type: ignore[import-untyped]
    from rockset import exceptions as sdk  # type: ignore[import-untyped]

    if isinstance(error, sdk.UnauthorizedException | sdk.ForbiddenException):
        return PermissionDeniedError(
            f"backend {BACKEND!r}: Rockset refused the API key ({error.status}) while {action}; "
            "check the key and the role it grants"
        )
    if isinstance(error, sdk.ApiException):
        status = error.status if isinstance(error.status, int) else None
        message, type_ = _body_details(error.body)
        described = f"{status} {type_}" if type_ else str(status)
        detail = f"Rockset answered {described} while {action}: {message or error.reason}"
        if status is None or status == 0 or status >= 500 or status in _REFUSED_STATUSES:
            applied = status not in _REFUSED_STATUSES
            return RocksetTransientError(f"backend {BACKEND!r}: {detail}", maybe_applied=applied)
        return RocksetApiError(f"backend {BACKEND!r}: {detail}", status=status, type=type_)
    if isinstance(error, urllib3.exceptions.HTTPError):
        cause: BaseException = error
        if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
            cause = error.reason
        # A connection that was never made (refused, or timed out while connecting;
        # NewConnectionError is a ConnectTimeoutError) cannot have carried the request.
        never_sent = isinstance(cause, urllib3.exceptions.ConnectTimeoutError)
        return RocksetTransientError(
            f"backend {BACKEND!r}: connection to Rockset failed while {action}: "
            f"{type(cause).__name__}: {cause}",
            maybe_applied=not never_sent,
        )
    if isinstance(error, sdk.RocksetException):
        return RocksetApiError(
            f"backend {BACKEND!r}: unexpected response from Rockset while {action}: {error}"
        )
    return error


def is_transient(error: BaseException) -> bool:
    """What :func:`chathistory.retry_transient` may retry."""
    return isinstance(error, RocksetTransientError)
