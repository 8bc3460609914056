"""chathistory: pluggable storage backends for LangChain conversations.

Importing the package imports none of its modules: each public name loads its
module on first use, so a plugin module that only names ``hookimpl``, and the
pytest plugin, stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory.agents import ChatHistoryMiddleware
    from chathistory.backend import (
        IDENTIFIER_PATTERN,
        Backend,
        BackendConfig,
        BaseBackend,
        Identifier,
        validate_options,
    )
    from chathistory.catalog import (
        ErasureReceipt,
        KeepsCatalog,
        SessionSummary,
        SummaryPage,
        aerase,
        alist_conversations,
        erase,
        list_conversations,
    )
    from chathistory.driver import Call, Driver, Operation
    from chathistory.errors import (
        BackendLoadError,
        BackendNotFoundError,
        BackendUnavailableError,
        CapabilityMissingError,
        ChatHistoryError,
        CollectionMissingError,
        CollectionTimeoutError,
        ConfigError,
        DuplicateBackendError,
        PermissionDeniedError,
        RecordError,
        SessionIdError,
    )
    from chathistory.history import ChatHistory, SessionHistoryFactory, history_factory
    from chathistory.hookspecs import hookimpl, hookspec
    from chathistory.operations import operation
    from chathistory.records import (
        decode_record,
        decode_records,
        encode_record,
        encode_records,
        to_messages,
        to_records,
    )
    from chathistory.registry import BackendInfo, available_backends, backend_class, get_backend
    from chathistory.retry import Translate, aretry_transient, retry_transient
    from chathistory.runner import Runner

__all__ = [
    "IDENTIFIER_PATTERN",
    "Backend",
    "BackendConfig",
    "BackendInfo",
    "BackendLoadError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "BaseBackend",
    "Call",
    "CapabilityMissingError",
    "ChatHistory",
    "ChatHistoryError",
    "ChatHistoryMiddleware",
    "CollectionMissingError",
    "CollectionTimeoutError",
    "ConfigError",
    "Driver",
    "DuplicateBackendError",
    "ErasureReceipt",
    "Identifier",
    "KeepsCatalog",
    "Operation",
    "PermissionDeniedError",
    "RecordError",
    "Runner",
    "SessionHistoryFactory",
    "SessionIdError",
    "SessionSummary",
    "SummaryPage",
    "Translate",
    "aerase",
    "alist_conversations",
    "aretry_transient",
    "available_backends",
    "backend_class",
    "decode_record",
    "decode_records",
    "encode_record",
    "encode_records",
    "erase",
    "get_backend",
    "history_factory",
    "hookimpl",
    "hookspec",
    "list_conversations",
    "operation",
    "retry_transient",
    "to_messages",
    "to_records",
    "validate_options",
]

# Each public name and the module that defines it.
_MODULES = {
    "ChatHistoryMiddleware": "agents",
    **dict.fromkeys(["IDENTIFIER_PATTERN", "Backend", "BackendConfig", "BaseBackend",
                     "Identifier", "validate_options"], "backend"),
    **dict.fromkeys(["Call", "Driver", "Operation"], "driver"),
    "Runner": "runner",
    **dict.fromkeys(["ErasureReceipt", "KeepsCatalog", "SessionSummary", "SummaryPage",
                     "aerase", "alist_conversations", "erase", "list_conversations"],
                    "catalog"),
    "operation": "operations",
    **dict.fromkeys(["BackendLoadError", "BackendNotFoundError", "BackendUnavailableError",
                     "CapabilityMissingError", "ChatHistoryError", "CollectionMissingError",
                     "CollectionTimeoutError",
                     "ConfigError", "DuplicateBackendError", "PermissionDeniedError", "RecordError",
                     "SessionIdError"], "errors"),
    **dict.fromkeys(["ChatHistory", "SessionHistoryFactory", "history_factory"], "history"),
    **dict.fromkeys(["hookimpl", "hookspec"], "hookspecs"),
    **dict.fromkeys(["decode_record", "decode_records", "encode_record", "encode_records",
                     "to_messages", "to_records"], "records"),
    **dict.fromkeys(["BackendInfo", "available_backends", "backend_class", "get_backend"],
                    "registry"),
    **dict.fromkeys(["Translate", "aretry_transient", "retry_transient"], "retry"),
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
