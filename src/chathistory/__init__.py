"""chathistory: pluggable storage backends for LangChain conversations."""

from typing import TYPE_CHECKING, Any

from chathistory.backend import (
    IDENTIFIER_PATTERN,
    Backend,
    BackendConfig,
    BaseBackend,
    Identifier,
    validate_options,
)
from chathistory.errors import (
    BackendLoadError,
    BackendNotFoundError,
    BackendUnavailableError,
    ChatHistoryError,
    CollectionTimeoutError,
    ConfigError,
    DuplicateBackendError,
    PermissionDeniedError,
    RecordError,
    SessionIdError,
)
from chathistory.history import ChatHistory, SessionHistoryFactory, history_factory
from chathistory.hookspecs import hookimpl, hookspec
from chathistory.records import decode_record, encode_record, to_messages, to_records
from chathistory.registry import BackendInfo, available_backends, backend_class, get_backend
from chathistory.retry import Translate, aretry_transient, retry_transient

if TYPE_CHECKING:
    from chathistory.agents import ChatHistoryMiddleware

__all__ = [
    "IDENTIFIER_PATTERN",
    "Backend",
    "BackendConfig",
    "BackendInfo",
    "BackendLoadError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "BaseBackend",
    "ChatHistory",
    "ChatHistoryError",
    "ChatHistoryMiddleware",
    "CollectionTimeoutError",
    "ConfigError",
    "DuplicateBackendError",
    "Identifier",
    "PermissionDeniedError",
    "RecordError",
    "SessionHistoryFactory",
    "SessionIdError",
    "Translate",
    "aretry_transient",
    "available_backends",
    "backend_class",
    "decode_record",
    "encode_record",
    "get_backend",
    "history_factory",
    "hookimpl",
    "hookspec",
    "retry_transient",
    "to_messages",
    "to_records",
    "validate_options",
]


def __getattr__(name: str) -> Any:
    # The middleware imports langchain's agent machinery: only when asked for.
    if name == "ChatHistoryMiddleware":
        from chathistory.agents import ChatHistoryMiddleware

        return ChatHistoryMiddleware
    raise AttributeError(f"module 'chathistory' has no attribute {name!r}")
