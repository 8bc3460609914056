"""The Rockset backend's errors, and how the SDK's errors read for the core's runner.

:func:`is_transient` and :func:`translate` are the driver's hooks;
:func:`maybe_applied` tells an append whether a failed write must be checked
for before it is sent again. The ``rockset`` SDK and ``urllib3`` are imported
inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chathistory import BackendUnavailableError, ChatHistoryError, PermissionDeniedError

__all__ = [
    "RocksetApiError",
    "RocksetSyncTimeoutError",
    "RocksetTransientError",
    "is_transient",
    "maybe_applied",
    "status_of",
    "translate",
]

BACKEND = "rockset"
_REFUSED_STATUSES = frozenset({408, 429, 503})  # refused without being applied


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
    """A try failed in a way worth retrying: 429, 5xx, a dropped or timed-out connection,
    or an append that could not yet learn whether its interrupted write was stored."""


class RocksetSyncTimeoutError(ChatHistoryError, TimeoutError):
    """With ``sync=True``: a write was stored, but Rockset did not report it queryable in time.

    The write is not lost and must not be sent again; it will become visible
    once Rockset catches up.
    """


def status_of(error: BaseException) -> int | None:
    """The HTTP status Rockset answered a failed SDK call with; None for other errors."""
    from rockset import exceptions as sdk  # type: ignore[import-untyped]

    if isinstance(error, sdk.ApiException) and isinstance(error.status, int):
        return error.status
    return None


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


def is_transient(error: BaseException) -> bool:
    """Whether a try may be repeated: 408, 429, 5xx, no HTTP status, or a connection error.

    A write that failed so may have been applied (see :func:`maybe_applied`);
    the append checks for it before sending it again.
    """
    import urllib3.exceptions  # type: ignore[import-untyped]
    from rockset import exceptions as sdk

    if isinstance(error, sdk.UnauthorizedException | sdk.ForbiddenException):
        return False
    if isinstance(error, sdk.ApiException):
        status = status_of(error)
        return status in (None, 0) or status >= 500 or status in _REFUSED_STATUSES
    return isinstance(error, urllib3.exceptions.HTTPError | RocksetTransientError)


def maybe_applied(error: BaseException) -> bool:
    """Whether a write that failed with ``error`` may have been applied all the same.

    False when Rockset refused it (408, 429, 503) or the connection was never
    made (refused, or timed out while connecting): then it is simply sent again.
    """
    import urllib3.exceptions

    if not is_transient(error) or isinstance(error, RocksetTransientError):
        return False
    if status_of(error) is not None:
        return status_of(error) not in _REFUSED_STATUSES
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    # NewConnectionError is a ConnectTimeoutError.
    return not isinstance(error, urllib3.exceptions.ConnectTimeoutError)


# urllib3 starts some messages with the connection's repr ("<...HTTPConnection object at 0x...>: ").
_OBJECT_REPR = re.compile(r"^<[\w.]+ object at 0x[0-9a-f]+>: ")


def translate(error: BaseException, *, server: str) -> BaseException:
    """The :mod:`chathistory.errors` error for an exception the SDK raised.

    Args:
        error: What the SDK (or urllib3 under it) raised.
        server: The server the client talks to (``http://127.0.0.1:3000``),
            named in every message so the user knows which one to check.

    Returns ``error`` itself when it is not an SDK or HTTP error. Never
    includes the API key: request headers are not part of any message.
    """
    import urllib3.exceptions
    from rockset import exceptions as sdk

    rockset = f"Rockset at {server}"
    if isinstance(error, sdk.UnauthorizedException | sdk.ForbiddenException):
        return PermissionDeniedError(
            f"backend {BACKEND!r}: {rockset} refused the API key ({error.status}); "
            "check the key and the role it grants")
    if isinstance(error, sdk.ApiException):
        status = status_of(error)
        message, type_ = _body_details(error.body)
        detail = f"{rockset} answered {status} {type_ or ''}".rstrip()
        detail += f": {message or error.reason}"
        if is_transient(error):
            return RocksetTransientError(detail)
        return RocksetApiError(f"backend {BACKEND!r}: {detail}", status=status, type=type_)
    if isinstance(error, urllib3.exceptions.HTTPError):
        cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else None
        cause = cause or error
        reason = _OBJECT_REPR.sub("", str(cause))
        return RocksetTransientError(
            f"cannot reach {rockset} ({type(cause).__name__}: {reason}); check the host "
            "option and that the server is up")
    if isinstance(error, sdk.RocksetException):
        return RocksetApiError(f"backend {BACKEND!r}: unexpected response from {rockset}: {error}")
    return error
