"""The embedded default: one SQLite file (or ``:memory:``), stdlib ``sqlite3`` only.

The table layout is langchain_community's ``SQLChatMessageHistory`` one
(``id``, ``session_id``, ``message`` as JSON text), so a file written by that
class is read here unchanged and the other way round. Beside it, a table
``<table>_sessions`` keeps each session's message count and last write time,
maintained by triggers, so that writes by that class are counted too.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import Field

from chathistory.backend import BackendConfig, BaseBackend, Identifier
from chathistory.capabilities import SessionInfo, check_page_limit, check_record_texts
from chathistory.errors import BackendUnavailableError, ChatHistoryError, CollectionMissingError
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


# Seconds since the epoch, to the millisecond, in SQLite 3.37 and later.
_NOW = "(julianday('now') - 2440587.5) * 86400.0"


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
        sessions = f'"{self.config.table}_sessions"'
        self._sessions_table = f"{self.config.table}_sessions"
        self._create_sql = [
            f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, "
            "session_id TEXT NOT NULL, message TEXT NOT NULL)",
            f'CREATE INDEX IF NOT EXISTS "{self.config.table}_session_id_id" '
            f"ON {table} (session_id, id)",
            f"CREATE TABLE IF NOT EXISTS {sessions} (session_id TEXT PRIMARY KEY, "
            "messages INTEGER NOT NULL, last_write REAL NOT NULL)",
            f'CREATE INDEX IF NOT EXISTS "{self.config.table}_sessions_last_write" '
            f"ON {sessions} (last_write)",
            f'CREATE TRIGGER IF NOT EXISTS "{self.config.table}_count_insert" AFTER INSERT '
            f"ON {table} BEGIN INSERT INTO {sessions} (session_id, messages, last_write) "
            f"VALUES (NEW.session_id, 1, {_NOW}) ON CONFLICT (session_id) DO UPDATE SET "
            "messages = messages + 1, last_write = excluded.last_write; END",
            f'CREATE TRIGGER IF NOT EXISTS "{self.config.table}_count_delete" AFTER DELETE '
            f"ON {table} BEGIN UPDATE {sessions} SET messages = messages - 1 "
            f"WHERE session_id = OLD.session_id; DELETE FROM {sessions} "
            "WHERE session_id = OLD.session_id AND messages <= 0; END",
        ]
        # A table written before the sessions table existed: count what it holds.
        self._backfill_sql = (
            f"INSERT INTO {sessions} (session_id, messages, last_write) "
            f"SELECT session_id, count(*), {_NOW} FROM {table} GROUP BY session_id"
        )
        self._insert_sql = f"INSERT INTO {table} (session_id, message) VALUES (?, ?)"
        self._select_all_sql = f"SELECT message FROM {table} WHERE session_id = ? ORDER BY id"
        self._select_newest_sql = (
            f"SELECT message FROM (SELECT id, message FROM {table} WHERE session_id = ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id"
        )
        self._delete_sql = f"DELETE FROM {table} WHERE session_id = ?"
        self._list_sql = (f"SELECT session_id, messages, last_write FROM {sessions} "
                          "WHERE session_id > ? ORDER BY session_id LIMIT ?")
        self._last_write_sql = f"SELECT last_write FROM {sessions} WHERE session_id = ?"
        self._count_old_sql = f"SELECT count(*) FROM {sessions} WHERE last_write < ?"
        self._delete_old_sql = (f"DELETE FROM {table} WHERE session_id IN "
                                f"(SELECT session_id FROM {sessions} WHERE last_write < ?)")
        self._select_many_sql = (f"SELECT session_id, message FROM {table} "
                                 "WHERE session_id IN ({}) ORDER BY session_id, id")
        self._in_memory = self.config.path == MEMORY
        # ':memory:' is one database per connection, so all threads share one, in turn.
        self._memory_lock = threading.Lock() if self._in_memory else None
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()

    def _connect(self, create: bool) -> sqlite3.Connection:
        """Open the file; only ``create_collection`` may create it (``create``)."""
        if self._in_memory:
            target, uri = self.config.path, False
        else:
            if create:
                self._make_directory()
            elif not Path(self.config.path).is_file():
                raise CollectionMissingError(
                    f"backend 'sqlite': no database at {self.config.path!r} "
                    "(nothing was created; check the path)")
            mode = "rwc" if create else "rw"
            target, uri = f"file:{quote(self.config.path)}?mode={mode}", True
        try:
            connection = sqlite3.connect(target, timeout=self.config.timeout, uri=uri,
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

    def _thread_connection(self, create: bool = False) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            with self._opened_lock:
                if self._in_memory and self._opened:
                    connection = self._opened[0]
                else:
                    connection = self._connect(create)
                    self._opened.append(connection)
            self._local.connection = connection
        return connection

    @contextmanager
    def _connection(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        connection = self._thread_connection(create)
        with self._memory_lock or nullcontext():
            try:
                yield connection
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    raise CollectionMissingError(
                        f"backend 'sqlite': {self.config.path!r} has no table "
                        f"{self.config.table!r} (nothing was created)") from exc
                raise BackendUnavailableError(f"backend 'sqlite' failed: {exc}") from exc
            except sqlite3.Error as exc:
                raise ChatHistoryError(f"backend 'sqlite' failed: {exc}") from exc

    def create_collection(self) -> None:
        def create() -> None:
            with self._connection(create=True) as connection:
                if not self._in_memory:
                    connection.execute("PRAGMA journal_mode=WAL")
                with self._transaction(connection):
                    new = connection.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (self._sessions_table,)).fetchone() is None
                    for statement in self._create_sql:
                        connection.execute(statement)
                    if new:
                        connection.execute(self._backfill_sql)

        # Switching a new file to WAL needs a moment alone with it; other
        # processes starting at once may hold it.
        retry_transient(create, backend="sqlite",
                        is_transient=lambda error: _is_locked(error.__cause__ or error))

    @staticmethod
    @contextmanager
    def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        rows = [(session_id, encode_record(record)) for record in records]
        with self._connection() as connection, self._transaction(connection):
            connection.executemany(self._insert_sql, rows)

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

    # -- optional capabilities: listing, write times, pruning, bulk copies ------------------

    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> list[SessionInfo]:
        limit = check_page_limit(limit)
        with self._connection() as connection:
            rows = connection.execute(self._list_sql, (after or "", limit)).fetchall()
        return [SessionInfo(session_id, messages, _time(written))
                for session_id, messages, written in rows]

    def last_write(self, session_id: str) -> datetime | None:
        with self._connection() as connection:
            row = connection.execute(self._last_write_sql, (session_id,)).fetchone()
        return None if row is None else _time(row[0])

    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        moment = _seconds(cutoff)
        with self._connection() as connection:
            if dry_run:
                return int(connection.execute(self._count_old_sql, (moment,)).fetchone()[0])
            with self._transaction(connection):
                count = int(connection.execute(self._count_old_sql, (moment,)).fetchone()[0])
                if count:
                    connection.execute(self._delete_old_sql, (moment,))
            return count

    def fetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return {session: [decode_record(text) for text in texts]
                for session, texts in self.fetch_many_text(session_ids).items()}

    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self._insert_texts({session_id: [encode_record(record) for record in records]
                            for session_id, records in batches.items()})

    def fetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if not session_ids:
            return found
        sql = self._select_many_sql.format(", ".join("?" * len(session_ids)))
        with self._connection() as connection:
            rows = connection.execute(sql, list(session_ids)).fetchall()
        for session_id, message in rows:
            found.setdefault(session_id, []).append(message)
        return found

    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        check_record_texts(batches)
        self._insert_texts(batches)

    def _insert_texts(self, batches: Mapping[str, Sequence[str]]) -> None:
        rows = [(session_id, text) for session_id, texts in batches.items() for text in texts]
        if not rows:
            return
        with self._connection() as connection, self._transaction(connection):
            connection.executemany(self._insert_sql, rows)

    async def alist_sessions(self, *, after: str | None = None, limit: int = 100
                             ) -> list[SessionInfo]:
        return await asyncio.to_thread(self.list_sessions, after=after, limit=limit)

    async def alast_write(self, session_id: str) -> datetime | None:
        return await asyncio.to_thread(self.last_write, session_id)

    async def adelete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        return await asyncio.to_thread(self.delete_sessions_before, cutoff, dry_run=dry_run)

    async def afetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return await asyncio.to_thread(self.fetch_many, session_ids)

    async def aappend_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        await asyncio.to_thread(self.append_many, batches)

    async def afetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        return await asyncio.to_thread(self.fetch_many_text, session_ids)

    async def aappend_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        await asyncio.to_thread(self.append_many_text, batches)

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for connection in opened:
            connection.close()


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware (for example datetime.now(UTC))")
    return moment.timestamp()


@hookimpl
def chathistory_backend() -> type[SqliteBackend]:
    return SqliteBackend
