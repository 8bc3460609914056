"""The ``postgres`` backend: chat histories in a PostgreSQL table, sync and native async.

Importing this module does not import psycopg; building a backend does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chathistory import BaseBackend
from chathistory_postgres.config import PostgresConfig

if TYPE_CHECKING:
    from chathistory_postgres._store import Store

__all__ = ["PostgresBackend"]


class PostgresBackend(BaseBackend):
    """Stores each message as a jsonb row; reads the newest N through an index on (session, id).

    Args:
        config: A :class:`PostgresConfig`; :meth:`from_options` builds one from keywords.

    Raises:
        chathistory.ConfigError: a bad option, or an application object of the wrong type.

    Connections are opened on first use, not here. Errors of later calls:
    :class:`~chathistory.BackendUnavailableError` when the server cannot be
    reached (after retrying what is safe to repeat),
    :class:`~chathistory.PermissionDeniedError` when it refuses the login or a
    privilege, :class:`~chathistory.RecordError` for a message jsonb cannot hold.

    Example::

        backend = PostgresBackend.from_options(conninfo="postgresql://app@db:5432/chat")
        history = ChatHistory("user-42", backend=backend)
        # or, by name, through the entry point:
        history = ChatHistory("user-42", backend="postgres", conninfo="postgresql://...")
    """

    name = "postgres"
    Config = PostgresConfig

    config: PostgresConfig

    def __init__(self, config: PostgresConfig) -> None:
        super().__init__(config)
        from chathistory_postgres._store import Store

        self._store: Store = Store(config)

    def __repr__(self) -> str:
        return (f"PostgresBackend(server={self._store.server.description!r}, "
                f"schema={self.config.db_schema!r}, table={self.config.table!r}, "
                f"layout={self.config.layout!r})")

    def create_collection(self) -> None:
        """Create the schema, table, index and version record if missing; check the layout."""
        self._store.create_collection()

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``records`` after the session's others: one statement, all or nothing."""
        self._store.append(session_id, records)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``."""
        return self._store.fetch(session_id, limit)

    def clear(self, session_id: str) -> None:
        """Delete this session's rows."""
        self._store.clear(session_id)

    def close(self) -> None:
        """Close the backend's own pools; connections and pools the app passed stay open."""
        self._store.close()

    async def acreate_collection(self) -> None:
        if self._store.async_.available:
            await self._store.acreate_collection()
        else:
            await super().acreate_collection()

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if self._store.async_.available:
            await self._store.aappend(session_id, records)
        else:
            await super().aappend(session_id, records)

    async def afetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        if self._store.async_.available:
            return await self._store.afetch(session_id, limit)
        return await super().afetch(session_id, limit=limit)

    async def aclear(self, session_id: str) -> None:
        if self._store.async_.available:
            await self._store.aclear(session_id)
        else:
            await super().aclear(session_id)

    async def aclose(self) -> None:
        await self._store.aclose()
