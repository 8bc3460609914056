"""The embedded default: one SQLite file (or ``:memory:``), stdlib ``sqlite3`` only.

The table layout is langchain_community's ``SQLChatMessageHistory`` one
(``id``, ``session_id``, ``message`` as JSON text), so a file written by that
class is read here unchanged and the other way round.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import Field

from chathistory.backend import BackendConfig, BaseBackend, Identifier
from chathistory.errors import BackendUnavailableError, ChatHistoryError
from chathistory.hookspecs import hookimpl
from chathistory.records import decode_record, encode_record
from chathistory.retry import retry_transient

__all__ = ["MEMORY", "SqliteBackend", "default_path"]

MEMORY = ":memory:"


def default_path() -> str:
    """``$CHATHISTORY_SQLITE_PATH``, else ``$XDG_DATA_HOME/chathistory/chathistory.sqlite3``."""
    configured = os.environ.get("CHATHISTORY_SQLITE_PATH")
    if configured:
        return configured
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "chathistory" / "chathistory.sqlite3")


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


class SqliteBackend(BaseBackend):
    """Stores each message as a row; reads the newest N through an index on (session, id).

    WAL mode lets readers run beside a writer; every append is one
    ``BEGIN IMMEDIATE`` transaction, so a batch is all or nothing and writers
    from other threads and processes wait (up to ``timeout``) instead of failing.
    """

    name = "sqlite"

    class Config(BackendConfig):
        path: str = Field(default_factory=default_path,
                          description="The database file (created if missing) or ':memory:'.")
        table: Identifier = Field("message_store", description="The table's name.")
        timeout: float = Field(30.0, gt=0, description="Seconds a writer waits for a lock.")

    config: Config

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config or self.Config())
        table = f'"{self.config.table}"'
        index = f'"{self.config.table}_session_id_id"'
        self._create_sql = (
            f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, "
            "session_id TEXT NOT NULL, message TEXT NOT NULL);"
            f"CREATE INDEX IF NOT EXISTS {index} ON {table} (session_id, id);"
        )
        self._insert_sql = f"INSERT INTO {table} (session_id, message) VALUES (?, ?)"
        self._select_all_sql = f"SELECT message FROM {table} WHERE session_id = ? ORDER BY id"
        self._select_newest_sql = (
            f"SELECT message FROM (SELECT id, message FROM {table} WHERE session_id = ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id"
        )
        self._delete_sql = f"DELETE FROM {table} WHERE session_id = ?"
        self._in_memory = self.config.path == MEMORY
        # ':memory:' is one database per connection, so all threads share one, in turn.
        self._memory_lock = threading.Lock() if self._in_memory else None
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if not self._in_memory:
            self._make_directory()
        try:
            connection = sqlite3.connect(self.config.path, timeout=self.config.timeout,
                                         isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise BackendUnavailableError(
                f"backend 'sqlite' cannot open {self.config.path!r}: {exc}"
            ) from exc
        return connection

    def _make_directory(self) -> None:
        directory = Path(self.config.path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((parent for parent in (directory, *directory.parents)
                            if parent.exists() and not parent.is_dir()), None)
            reason = (f"{str(blocker)!r} is not a directory" if blocker is not None
                      else f"its directory cannot be created ({exc.strerror or exc})")
            raise BackendUnavailableError(
                f"backend 'sqlite' cannot open {self.config.path!r}: {reason}"
            ) from exc

    def _thread_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            with self._opened_lock:
                if self._in_memory and self._opened:
                    connection = self._opened[0]
                else:
                    connection = self._connect()
                    self._opened.append(connection)
            self._local.connection = connection
        return connection

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = self._thread_connection()
        with self._memory_lock or nullcontext():
            try:
                yield connection
            except sqlite3.OperationalError as exc:
                raise BackendUnavailableError(f"backend 'sqlite' failed: {exc}") from exc
            except sqlite3.Error as exc:
                raise ChatHistoryError(f"backend 'sqlite' failed: {exc}") from exc

    def create_collection(self) -> None:
        def create() -> None:
            with self._connection() as connection:
                if not self._in_memory:
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(self._create_sql)

        # Switching a new file to WAL needs a moment alone with it; other
        # processes starting at once may hold it.
        retry_transient(create, backend="sqlite",
                        is_transient=lambda error: _is_locked(error.__cause__ or error))

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        rows = [(session_id, encode_record(record)) for record in records]
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(self._insert_sql, rows)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        if limit == 0:
            return []
        with self._connection() as connection:
            if limit is None:
                rows = connection.execute(self._select_all_sql, (session_id,)).fetchall()
            else:
                rows = connection.execute(self._select_newest_sql, (session_id, limit)).fetchall()
        return [decode_record(row[0]) for row in rows]

    def clear(self, session_id: str) -> None:
        with self._connection() as connection:
            connection.execute(self._delete_sql, (session_id,))

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for connection in opened:
            connection.close()


@hookimpl
def chathistory_backend() -> type[SqliteBackend]:
    return SqliteBackend
