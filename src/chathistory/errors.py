"""The one error hierarchy of chathistory.

Every error the framework or a backend raises on purpose is a
:class:`ChatHistoryError`, so an application can catch one class. Where a
standard exception fits too (a bad option is a ``ValueError``, an unknown
backend a ``LookupError``), the error is also that, so existing handlers work.
"""

from __future__ import annotations

__all__ = [
    "BackendLoadError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "CapabilityMissingError",
    "ChatHistoryError",
    "CollectionMissingError",
    "CollectionTimeoutError",
    "ConfigError",
    "DuplicateBackendError",
    "PermissionDeniedError",
    "RecordError",
    "SessionIdError",
]


class ChatHistoryError(Exception):
    """The base of every error chathistory raises on purpose."""


class BackendNotFoundError(ChatHistoryError, LookupError):
    """No installed backend has the requested name. The message lists the installed ones."""


class BackendLoadError(ChatHistoryError, ImportError):
    """A backend's plugin could not be imported or did not return a backend class."""


class DuplicateBackendError(ChatHistoryError, LookupError):
    """Two distributions register the same backend name. The message names both."""


class ConfigError(ChatHistoryError, ValueError):
    """An option is missing, unknown or of the wrong type. The message names backend and field."""


class RecordError(ChatHistoryError, ValueError):
    """A message cannot be stored as JSON (for example a value that is not serializable),
    or a stored record cannot be read back as a message (the message names the session
    and the record's position)."""


class BackendUnavailableError(ChatHistoryError, ConnectionError):
    """The store could not be reached, even after retrying. Nothing was half-written."""


class PermissionDeniedError(ChatHistoryError, PermissionError):
    """The store refused the credentials. Retrying will not help."""


class CollectionTimeoutError(BackendUnavailableError, TimeoutError):
    """The table, collection or index did not become ready in time."""


class SessionIdError(ChatHistoryError, ValueError):
    """A run or call has no usable session id. The message says what to pass."""


class CapabilityMissingError(ChatHistoryError, LookupError):
    """The job needs an optional capability (listing sessions, write times...) the backend lacks."""


class CollectionMissingError(ChatHistoryError, LookupError):
    """The store, table or collection does not exist; reading created nothing."""
