"""chathistory-postgres: the ``postgres`` backend of chathistory (psycopg 3, sync and async).

Use it by name, ``ChatHistory("s", backend="postgres", conninfo="postgresql://...")``,
or build it: ``PostgresBackend.from_options(conninfo=...)``. Importing the package
(as the plugin loader does) loads neither the backend nor psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chathistory_postgres.backend import PostgresBackend
    from chathistory_postgres.config import PostgresConfig

__all__ = ["PostgresBackend", "PostgresConfig"]


def __getattr__(name: str) -> Any:
    if name == "PostgresBackend":
        from chathistory_postgres.backend import PostgresBackend

        return PostgresBackend
    if name == "PostgresConfig":
        from chathistory_postgres.config import PostgresConfig

        return PostgresConfig
    raise AttributeError(f"module 'chathistory_postgres' has no attribute {name!r}")
