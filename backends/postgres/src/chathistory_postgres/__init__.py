"""chathistory-postgres: the ``postgres`` backend of chathistory (psycopg 3, sync and async).

Use it by name, ``ChatHistory("s", backend="postgres", conninfo="postgresql://...")``,
or build it: ``PostgresBackend.from_options(conninfo=...)``. Importing the package
(as the plugin loader does) loads neither the backend nor psycopg.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chathistory_postgres.backend import PostgresBackend
    from chathistory_postgres.config import PostgresConfig

__all__ = ["PostgresBackend", "PostgresConfig"]
_MODULES = {"PostgresBackend": "backend", "PostgresConfig": "config"}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
