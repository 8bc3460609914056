"""Redis backend for chathistory: ``ChatHistory(session_id, backend="redis", ...)``.

Importing this package is cheap: its names load on first use, and redis-py
loads when a backend is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chathistory_redis.backend import RedisBackend
    from chathistory_redis.config import RedisConfig

__all__ = ["RedisBackend", "RedisConfig"]

_MODULES = {"RedisBackend": "backend", "RedisConfig": "config"}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
