"""chathistory-postgres: the ``postgres`` backend of chathistory (psycopg 3, sync and async).

Use it by name, ``ChatHistory("s", backend="postgres", conninfo="postgresql://...")``,
or build it: ``PostgresBackend.from_options(conninfo=...)``. Importing the package
(as the plugin loader does) loads neither the backend nor psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory_postgres.backend import PostgresBackend
    from chathistory_postgres.config import PostgresConfig

__all__ = ["PostgresBackend", "PostgresConfig"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"PostgresBackend": "backend", "PostgresConfig": "config"})
