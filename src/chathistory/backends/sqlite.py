"""The embedded default: one SQLite file (or ``:memory:``), stdlib ``sqlite3`` only.

The table layout is langchain_community's ``SQLChatMessageHistory`` one
(``id``, ``session_id``, ``message`` as JSON text), so a file written by that
class is read here unchanged and the other way round. Beside it, a table
``<table>_sessions`` is the session catalog: each session's message count,
created and last write times (maintained by triggers, so that writes by that
class are counted too, in the same transaction), owner, title and metadata.

The schema is an append-only list of versioned steps (:func:`migrations`);
``<table>_migrations`` records which ran, and ``create_collection`` runs the
rest, so a file made by an earlier release is upgraded in place.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from pydantic import Field

from chathistory.backend import BackendConfig, BaseBackend, Identifier
from chathistory.capabilities import SessionInfo, check_cutoff, check_record_texts
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    MetadataValue,
    SessionSummary,
    SummaryPage,
    Unchanged,
    check_limit,
    check_session_ids,
    check_text,
    check_update,
    check_where,
    checked_entry,
    read_cursor,
    summary_page,
    updated_entry,
)
from chathistory.driver import Call, Driver, Operation
from chathistory.errors import BackendUnavailableError, ChatHistoryError, CollectionMissingError
from chathistory.hookspecs import hookimpl
from chathistory.operations import operation
from chathistory.records import decode_records, encode_records
from chathistory.runner import Runner

__all__ = ["MEMORY", "Many", "SqliteBackend", "SqliteDriver", "default_path", "migrations"]

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


def migrations(table: str) -> list[list[str]]:
    """The schema of ``table`` as versioned steps: step ``n`` is version ``n``. Append only.

    Step 0 is the layout of the release before the catalog, every statement
    idempotent, so a file made by it (which recorded no version) takes it again
    harmlessly; it counts what a table made before the sessions table holds.
    """
    messages, sessions, name = f'"{table}"', f'"{table}_sessions"', table
    count_insert = (
        f'CREATE TRIGGER IF NOT EXISTS "{name}_count_insert" AFTER INSERT ON {messages} '
        f"BEGIN INSERT INTO {sessions} (session_id, messages, last_write) "
        f"VALUES (NEW.session_id, 1, {_NOW}) ON CONFLICT (session_id) DO UPDATE SET "
        "messages = messages + 1, last_write = excluded.last_write; END")
    return [
        [
            f"CREATE TABLE IF NOT EXISTS {messages} (id INTEGER PRIMARY KEY, "
            "session_id TEXT NOT NULL, message TEXT NOT NULL)",
            f'CREATE INDEX IF NOT EXISTS "{name}_session_id_id" ON {messages} (session_id, id)',
            f"CREATE TABLE IF NOT EXISTS {sessions} (session_id TEXT PRIMARY KEY, "
            "messages INTEGER NOT NULL, last_write REAL NOT NULL)",
            f'CREATE INDEX IF NOT EXISTS "{name}_sessions_last_write" ON {sessions} (last_write)',
            count_insert,
            f'CREATE TRIGGER IF NOT EXISTS "{name}_count_delete" AFTER DELETE ON {messages} '
            f"BEGIN UPDATE {sessions} SET messages = messages - 1 "
            f"WHERE session_id = OLD.session_id; DELETE FROM {sessions} "
            "WHERE session_id = OLD.session_id AND messages <= 0; END",
            f"INSERT OR IGNORE INTO {sessions} (session_id, messages, last_write) "
            f"SELECT session_id, count(*), {_NOW} FROM {messages} GROUP BY session_id",
        ],
        [  # 1: the catalog. Times keep their column; "newest first" is an index range.
            f"ALTER TABLE {sessions} ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
            f"UPDATE {sessions} SET created_at = last_write",
            f"ALTER TABLE {sessions} ADD COLUMN owner TEXT",
            f"ALTER TABLE {sessions} ADD COLUMN title TEXT",
            f"ALTER TABLE {sessions} ADD COLUMN metadata TEXT NOT NULL DEFAULT '{{}}'",
            f'DROP INDEX IF EXISTS "{name}_sessions_last_write"',
            f'CREATE INDEX "{name}_sessions_updated" ON {sessions} (last_write, session_id)',
            f'CREATE INDEX "{name}_sessions_owner_updated" '
            f"ON {sessions} (owner, last_write, session_id)",
            f'DROP TRIGGER IF EXISTS "{name}_count_insert"',
            count_insert.replace("(session_id, messages, last_write)",
                                 "(session_id, messages, last_write, created_at)")
                        .replace(f"1, {_NOW})", f"1, {_NOW}, {_NOW})"),
        ],
        [  # 2: sessions without an owner cost an append no entry in the owner index
            f'DROP INDEX "{name}_sessions_owner_updated"',
            f'CREATE INDEX "{name}_sessions_owner_updated" '
            f"ON {sessions} (owner, last_write, session_id) WHERE owner IS NOT NULL",
        ],
    ]


_SUMMARY_COLUMNS = "session_id, owner, title, metadata, created_at, last_write, messages"
_IDS_PER_STATEMENT = 500  # well under SQLite's limit of bound parameters


class Many(NamedTuple):
    """A request to run ``sql`` once per row of ``rows`` (``executemany``)."""

    sql: str
    rows: Sequence[tuple[Any, ...]]


Request = tuple[str, tuple[Any, ...]] | Many
"""What a sqlite operation yields: a statement and its parameters, or :class:`Many`."""


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


class SqliteDriver(Driver[sqlite3.Connection, None, None]):
    """One ``sqlite3`` connection per thread (the stdlib has no pool); async runs in threads.

    Only ``create_collection`` may create the file: any other call on a
    missing file raises :class:`CollectionMissingError` and creates nothing.
    """

    def __init__(self, config: SqliteBackend.Config) -> None:
        self.path = config.path
        self.table = config.table
        self.timeout = config.timeout
        self.in_memory = config.path == MEMORY
        # ':memory:' is one database per connection, so all threads share one, in turn.
        self._memory_lock = threading.Lock() if self.in_memory else None
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        # Closing a connection another thread is using crashes the interpreter, so
        # close() leaves a busy one to the last thread that releases it.
        self._users: dict[sqlite3.Connection, int] = {}
        self._retired: set[sqlite3.Connection] = set()

    def _connect(self, create: bool) -> sqlite3.Connection:
        if self.in_memory:
            target, uri = self.path, False
        else:
            if Path(self.path).is_dir():
                hint = (f"{self.path!r} is a directory: give the path of a database file in "
                        f"it, such as {str(Path(self.path) / 'chat.sqlite3')!r}")
                if create:
                    raise BackendUnavailableError(
                        f"backend 'sqlite' cannot open {self.path!r}: {hint}")
                raise CollectionMissingError(f"backend 'sqlite': {hint} (nothing was created)")
            if create:
                self._make_directory()
            elif not Path(self.path).is_file():
                raise CollectionMissingError(
                    f"backend 'sqlite': no database at {self.path!r} "
                    "(nothing was created; check the path)")
            mode = "rwc" if create else "rw"
            target, uri = f"file:{quote(self.path)}?mode={mode}", True
        try:
            connection = sqlite3.connect(target, timeout=self.timeout, uri=uri,
                                         isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise BackendUnavailableError(
                f"backend 'sqlite' cannot open {self.path!r}: {exc}") from exc
        return connection

    def _make_directory(self) -> None:
        directory = Path(self.path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((parent for parent in (directory, *directory.parents)
                            if parent.exists() and not parent.is_dir()), None)
            reason = (f"{str(blocker)!r} is not a directory" if blocker is not None
                      else f"its directory cannot be created ({exc.strerror or exc})")
            raise BackendUnavailableError(
                f"backend 'sqlite' cannot open {self.path!r}: {reason}") from exc

    def _open_for_thread(self, create: bool) -> sqlite3.Connection:
        """A connection for this thread (``:memory:``'s one); call with ``_opened_lock`` held."""
        if self.in_memory and self._opened:
            connection = self._opened[0]
        else:
            connection = self._connect(create)
            self._opened.append(connection)
        self._local.connection = connection
        return connection

    def connection(self, call: Call) -> AbstractContextManager[sqlite3.Connection]:
        return _Lease(self, call)

    def send(self, connection: sqlite3.Connection, request: Request) -> list[Any]:
        if type(request) is Many:
            connection.executemany(request.sql, request.rows)
            return []
        sql, params = request
        return connection.execute(sql, params).fetchall()

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        # A locked database ran nothing of the call: BEGIN IMMEDIATE or the lone
        # statement waited ``timeout`` for the lock and gave up.
        return _is_locked(error)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        if isinstance(error, sqlite3.OperationalError):
            if _no_sessions_table(error) and str(error).endswith(f"{self.table}_sessions"):
                return CollectionMissingError(
                    f"backend 'sqlite': the table {self.table!r} in {self.path!r} has no "
                    f"session catalog yet (no table '{self.table}_sessions', as in a file "
                    "langchain_community's SQLChatMessageHistory made); create_collection "
                    "(any write through ChatHistory) adds it in place (nothing was created)")
            if "no such table" in str(error):
                return CollectionMissingError(
                    f"backend 'sqlite': {self.path!r} has no table {self.table!r} "
                    "(nothing was created)")
            if "no such column" in str(error):
                return CollectionMissingError(
                    f"backend 'sqlite': the table {self.table!r} in {self.path!r} was made by "
                    "an earlier release; create_collection (any write through ChatHistory) "
                    "upgrades it in place")
            return BackendUnavailableError(f"backend 'sqlite' failed: {error}")
        if isinstance(error, sqlite3.Error):
            return ChatHistoryError(f"backend 'sqlite' failed: {error}")
        return error

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
            busy = {connection for connection in opened if connection in self._users}
            self._retired |= busy
        for connection in opened:
            if connection not in busy:
                connection.close()


class _Lease(AbstractContextManager[sqlite3.Connection]):
    """This thread's connection for one try of ``call`` (``:memory:``'s in turn), marked as
    in use meanwhile (see :meth:`SqliteDriver.close`), in a transaction when the call asks
    for one: committed on a clean exit, else rolled back. (A class: a ``@contextmanager``
    costs a generator and three more frames a call.)"""

    __slots__ = ("call", "connection", "driver", "lock")

    def __init__(self, driver: SqliteDriver, call: Call) -> None:
        self.driver, self.call = driver, call
        self.lock: threading.Lock | None = None  # ':memory:''s, while held

    def __enter__(self) -> sqlite3.Connection:
        driver = self.driver
        with driver._opened_lock:
            connection = getattr(driver._local, "connection", None) \
                or driver._open_for_thread(self.call.operation == "create_collection")
            driver._users[connection] = driver._users.get(connection, 0) + 1
        self.connection = connection
        try:
            if driver._memory_lock is not None:
                driver._memory_lock.acquire()
                self.lock = driver._memory_lock
            if self.call.transaction:
                # IMMEDIATE: the write lock first, so a writer waits (up to timeout)
                # for others instead of failing midway.
                connection.execute("BEGIN IMMEDIATE")
        except BaseException as error:
            self.__exit__(type(error), error, error.__traceback__)
            raise
        return connection

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        connection = self.connection
        try:
            if connection.in_transaction:
                if error is not None:
                    connection.execute("ROLLBACK")
                    return
                try:
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
        finally:
            if self.lock is not None:
                self.lock.release()
            driver = self.driver
            with driver._opened_lock:
                users = driver._users.pop(connection) - 1
                if users:
                    driver._users[connection] = users
                    retired = False
                else:
                    retired = connection in driver._retired
                    driver._retired.discard(connection)
            if retired:  # close() left it to the last thread using it
                connection.close()


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
        self.driver = SqliteDriver(self.config)
        self.runner = Runner(self, self.driver)
        table = f'"{self.config.table}"'
        sessions = f'"{self.config.table}_sessions"'
        self._versions = f'"{self.config.table}_migrations"'
        self._insert_sql = f"INSERT INTO {table} (session_id, message) VALUES (?, ?)"
        self._select_all_sql = f"SELECT message FROM {table} WHERE session_id = ? ORDER BY id"
        self._select_newest_sql = (
            f"SELECT message FROM (SELECT id, message FROM {table} WHERE session_id = ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id"
        )
        self._delete_sql = f"DELETE FROM {table} WHERE session_id = ?"
        self._list_sql = (f"SELECT session_id, messages, last_write FROM {sessions} "
                          "WHERE session_id > ? AND messages > 0 ORDER BY session_id LIMIT ?")
        # A table without the sessions table beside it: counted, its write times unknown.
        self._list_uncounted_sql = (
            f"SELECT session_id, count(*), NULL FROM {table} WHERE session_id > ? "
            "GROUP BY session_id ORDER BY session_id LIMIT ?")
        self._last_write_sql = (f"SELECT last_write FROM {sessions} "
                                "WHERE session_id = ? AND messages > 0")
        self._sessions = sessions
        self._table = table
        self._select_many_sql = (f"SELECT session_id, message FROM {table} "
                                 "WHERE session_id IN ({}) ORDER BY session_id, id")

    # -- the four operations, each written once: the runner drives them sync and async --

    @operation(write=True)
    def create_collection(self) -> Operation[None]:
        if not self.driver.in_memory:
            # Outside the transaction: SQLite cannot switch to WAL inside one.
            yield ("PRAGMA journal_mode=WAL", ())
        yield ("BEGIN IMMEDIATE", ())
        yield (f"CREATE TABLE IF NOT EXISTS {self._versions} (version INTEGER PRIMARY KEY)",
               ())
        ((done,),) = yield (f"SELECT coalesce(max(version), -1) FROM {self._versions}", ())
        for version, statements in enumerate(migrations(self.config.table)):
            if version > done:
                for statement in statements:
                    yield (statement, ())
                yield (f"INSERT INTO {self._versions} (version) VALUES (?)", (version,))
        yield ("COMMIT", ())

    @operation(write=True, transaction=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        rows = [(session_id, text) for text in encode_records(records)]
        yield Many(self._insert_sql, rows)

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        if limit == 0:
            return []
        if limit is None:
            rows = yield (self._select_all_sql, (session_id,))
        else:
            rows = yield (self._select_newest_sql, (session_id, limit))
        return decode_records([text for (text,) in rows])

    @operation(write=True, transaction=True)
    def clear(self, session_id: str) -> Operation[None]:
        yield (self._delete_sql, (session_id,))
        # A summary without messages (a title set first) goes too.
        yield (f"DELETE FROM {self._sessions} WHERE session_id = ?", (session_id,))

    # -- optional capabilities: listing, write times, pruning, bulk copies ------------------

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        limit = check_limit(limit)
        try:
            rows = yield (self._list_sql, (after or "", limit))
        except sqlite3.OperationalError as error:
            if not _no_sessions_table(error):
                raise
            rows = yield (self._list_uncounted_sql, (after or "", limit))
        return [SessionInfo(session_id, messages, None if written is None else _time(written))
                for session_id, messages, written in rows]

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        rows = yield (self._last_write_sql, (session_id,))
        return _time(rows[0][0]) if rows else None

    @operation(write=True)
    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False,
                               owner: str | None = None) -> Operation[int]:
        moment = check_cutoff(cutoff).timestamp()
        old = f"{self._sessions} WHERE last_write < ?"
        parameters: tuple[Any, ...] = (moment,)
        if check_text("owner", owner) is not None:
            old, parameters = f"{old} AND owner = ?", (moment, owner)
        if dry_run:
            return int((yield (f"SELECT count(*) FROM {old}", parameters))[0][0])
        yield ("BEGIN IMMEDIATE", ())
        count = int((yield (f"SELECT count(*) FROM {old}", parameters))[0][0])
        if count:
            yield (f"DELETE FROM {self._table} WHERE session_id IN "
                   f"(SELECT session_id FROM {old})", parameters)
            yield (f"DELETE FROM {old}", parameters)  # the summaries without messages
        yield ("COMMIT", ())
        return count

    @operation()
    def fetch_many(self, session_ids: Sequence[str]
                   ) -> Operation[dict[str, list[dict[str, Any]]]]:
        texts = yield from self._select_many(session_ids)
        return {session: decode_records(stored) for session, stored in texts.items()}

    @operation(write=True, transaction=True)
    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]
                    ) -> Operation[None]:
        rows = [(session_id, text) for session_id, records in batches.items()
                for text in encode_records(records)]
        if rows:
            yield Many(self._insert_sql, rows)

    @operation()
    def fetch_many_text(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        return (yield from self._select_many(session_ids))

    @operation(write=True, transaction=True)
    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        check_record_texts(batches)
        rows = [(session_id, text) for session_id, texts in batches.items() for text in texts]
        if rows:
            yield Many(self._insert_sql, rows)

    def _select_many(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        found: dict[str, list[str]] = {}
        if not session_ids:
            return found
        sql = self._select_many_sql.format(", ".join("?" * len(session_ids)))
        for session_id, message in (yield (sql, tuple(session_ids))):
            found.setdefault(session_id, []).append(message)
        return found

    # -- the session catalog: the sessions table, kept by the triggers ----------------------

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        conditions: list[str] = []
        parameters: list[Any] = []
        if check_text("owner", owner) is not None:
            conditions.append("owner = ?")
            parameters.append(owner)
        for key, value in check_where(where).items():
            # `->` gives the value's JSON text, so "1", 1 and true stay apart.
            conditions.append("metadata -> ? = ?")
            parameters += [f'$."{key}"', json.dumps(value, ensure_ascii=False)]
        limit = check_limit(limit)
        after = read_cursor(cursor, newest_first, ((int, float), str))
        if after is not None:
            conditions.append(f"(last_write, session_id) {'<' if newest_first else '>'} (?, ?)")
            parameters += after
        order = "DESC" if newest_first else "ASC"
        sql = (f"SELECT {_SUMMARY_COLUMNS} FROM {self._sessions} "
               f"{'WHERE ' + ' AND '.join(conditions) if conditions else ''} "
               f"ORDER BY last_write {order}, session_id {order} LIMIT ?")
        rows = yield from self._read_summaries(sql, (*parameters, limit + 1))
        return summary_page(rows, limit, newest_first, _summary, lambda row: [row[5], row[0]])

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        found: dict[str, SessionSummary] = {}
        for part in _parts(session_ids):
            try:
                rows = yield from self._read_summaries(
                    f"SELECT {_SUMMARY_COLUMNS} FROM {self._sessions} "
                    f"WHERE session_id IN ({', '.join('?' * len(part))})", tuple(part))
            except sqlite3.OperationalError as error:
                if not _no_sessions_table(error):
                    raise
                return {}  # no catalog yet, so no entries: an export writes the records
            found.update((row[0], _summary(row)) for row in rows)
        return found

    def _read_summaries(self, sql: str, parameters: tuple[Any, ...]) -> Operation[list[Any]]:
        """The rows of ``sql``, a read of the sessions table. On a table made before the
        catalog (no owner, title, metadata or created_at yet), the same read of what the
        upgrade makes of it, so that reading (an export) needs no write first."""
        try:
            return (yield (sql, parameters))  # type: ignore[no-any-return]
        except sqlite3.OperationalError as error:
            if "no such column" not in str(error):
                raise
        upgraded = (f"(SELECT session_id, NULL AS owner, NULL AS title, '{{}}' AS metadata, "
                    f"last_write AS created_at, last_write, messages FROM {self._sessions})")
        sql = sql.replace(f"FROM {self._sessions}", f"FROM {upgraded}")
        return (yield (sql, parameters))  # type: ignore[no-any-return]

    @operation(write=True, transaction=True)
    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None,
                       replace_metadata: bool = False,
                       only_if_unset: bool = False) -> Operation[SessionSummary]:
        check_update(owner, title, metadata)
        rows = yield (f"SELECT owner, title, metadata FROM {self._sessions} "
                      "WHERE session_id = ?", (session_id,))
        entry = updated_entry(rows[0] if rows else None, owner, title, metadata,
                              replace_metadata, only_if_unset)
        yield (f"INSERT INTO {self._sessions} (session_id, messages, last_write, created_at, "
               f"owner, title, metadata) VALUES (?, 0, {_NOW}, {_NOW}, ?, ?, ?) "
               "ON CONFLICT (session_id) DO UPDATE SET owner = excluded.owner, "
               "title = excluded.title, metadata = excluded.metadata",
               (session_id, *entry))
        (row,) = yield (f"SELECT {_SUMMARY_COLUMNS} FROM {self._sessions} "
                        "WHERE session_id = ?", (session_id,))
        return _summary(row)

    @operation(write=True, transaction=True)
    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> Operation[ErasureReceipt]:
        receipt = ErasureReceipt(dry_run=dry_run)
        for part in _parts(session_ids):
            among = f"session_id IN ({', '.join('?' * len(part))})"
            ((sessions, messages),) = yield (
                f"SELECT count(*), coalesce(sum(messages), 0) FROM {self._sessions} "
                f"WHERE {among}", tuple(part))
            receipt.add(ErasureReceipt(sessions, messages))
            if not dry_run and sessions:
                yield (f"DELETE FROM {self._table} WHERE {among}", tuple(part))
                yield (f"DELETE FROM {self._sessions} WHERE {among}", tuple(part))
        return receipt

    @operation(write=True, transaction=True)
    def restore_summaries(self, summaries: Sequence[SessionSummary]) -> Operation[None]:
        rows = [(summary.session_id, _seconds(summary.updated_at),
                 _seconds(summary.created_at), *checked_entry(summary))
                for summary in summaries]
        if rows:
            yield Many(f"INSERT INTO {self._sessions} (session_id, messages, last_write, "
                       "created_at, owner, title, metadata) VALUES (?, 0, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (session_id) DO UPDATE SET "
                       "last_write = excluded.last_write, created_at = excluded.created_at, "
                       "owner = excluded.owner, title = excluded.title, "
                       "metadata = excluded.metadata", rows)


def _no_sessions_table(error: sqlite3.OperationalError) -> bool:
    """A table made without the sessions table beside it (by SQLChatMessageHistory)."""
    return str(error).startswith("no such table") and str(error).endswith("_sessions")


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _summary(row: Sequence[Any]) -> SessionSummary:
    session_id, owner, title, metadata, created_at, updated_at, messages = row
    return SessionSummary(session_id, owner, title, json.loads(metadata), _time(created_at),
                          _time(updated_at), messages)


def _parts(session_ids: Sequence[str]) -> Iterator[list[str]]:
    ids = check_session_ids(session_ids)
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        yield ids[start:start + _IDS_PER_STATEMENT]


def _seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (for example datetime.now(UTC)), "
                         f"not {moment!r}")
    return moment.timestamp()


@hookimpl
def chathistory_backend() -> type[SqliteBackend]:
    return SqliteBackend
