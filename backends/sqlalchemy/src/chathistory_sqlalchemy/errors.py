"""SQLAlchemy's errors read as chathistory's, and which of them the core's retry may repeat.

A try is repeated only when nothing of it can have been committed: no
connection could be opened (:class:`NotConnected`; not a refused login or an
unknown database); the server rolled it back and said so (deadlock, lock wait
timeout, SQLite busy); or the connection was lost before the commit was sent
(the server rolls back what it was not told to commit). A call that does not
write (a read, or creating the table) is also repeated after a lost connection
or a race with another creator. A write whose connection is lost during its
commit (:class:`CommitFailed`) may have committed: it is never repeated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc

from chathistory import (
    BackendUnavailableError,
    ChatHistoryError,
    CollectionMissingError,
    ConfigError,
    PermissionDeniedError,
    RecordError,
)

__all__ = ["CommitFailed", "NotConnected", "error_code", "failing_as", "index_missing",
           "is_transient", "translate"]

# MySQL/MariaDB error numbers.
ACCESS_DENIED, UNKNOWN_DATABASE = frozenset({1044, 1045, 1142, 1143, 1227, 1698}), 1049
ROLLED_BACK = frozenset({1205, 1213})  # lock wait timeout, deadlock
# A creator raced another: the table, column, key or version row exists, or
# information_schema skipped a table while another connection's DDL changed it.
CREATE_RACES = frozenset({1050, 1060, 1061, 1062, 1684})
UNKNOWN_COLUMN, NO_SUCH_TABLE = 1054, 1146
TRIGGER_NEEDS_SUPER = 1419  # CREATE TRIGGER, binary logging on, no log_bin_trust_function_creators
CONNECTION_LOST = frozenset({2006, 2013, 2014, 2045, 2055, 1927, 1053, 1077, 1080})
RECORD_REFUSED = frozenset({1366, 1406, 1153, 1301})  # bad string, too long, packet too big
# SQLite result codes: busy or locked; read-only, no permission, refused; can't open; too big.
SQLITE_BUSY, SQLITE_REFUSED = frozenset({5, 6}), frozenset({8, 3, 23})
SQLITE_CANTOPEN, SQLITE_TOOBIG = 14, frozenset({18})


class Failed(Exception):
    """SQLAlchemy's ``error``, and where in a try it happened."""

    def __init__(self, error: sa_exc.DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


class NotConnected(Failed):
    """No connection could be lent or opened: nothing of the try was sent."""


class CommitFailed(Failed):
    """The commit failed: on a lost connection, whether it committed is unknown."""


@contextmanager
def failing_as(kind: type[Failed]) -> Iterator[None]:
    """Raise a DBAPI error of the block as ``kind`` (where in the try it happened)."""
    try:
        yield
    except sa_exc.DBAPIError as error:
        raise kind(error) from error


def _unwrapped(error: BaseException) -> BaseException:
    return error.error if isinstance(error, Failed) else error


def _driver_error(error: BaseException) -> BaseException:
    error = _unwrapped(error)
    return error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig else error


def error_code(error: BaseException) -> int | None:
    """The database's error number: MySQL's (``args[0]``), or SQLite's result code."""
    driver = _driver_error(error)
    if isinstance(driver, sqlite3.Error):
        code = getattr(driver, "sqlite_errorcode", None)
        return code & 0xFF if isinstance(code, int) else None
    args: tuple[Any, ...] = getattr(driver, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def reason(error: BaseException) -> str:
    """The database's own message, without SQLAlchemy's statement and parameters."""
    driver = _driver_error(error)
    args: tuple[Any, ...] = getattr(driver, "args", ())
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"({args[0]}) {args[1]}"
    else:
        text = str(driver)
    return (text.strip().split("\n")[0] or type(driver).__name__)[:500]


def _sqlite(error: BaseException) -> bool:
    return isinstance(_driver_error(error), sqlite3.Error)


def _lost(error: BaseException) -> bool:
    inner = _unwrapped(error)
    return isinstance(inner, sa_exc.DBAPIError) and (
        inner.connection_invalidated or (not _sqlite(error)
                                         and error_code(error) in CONNECTION_LOST))


def index_missing(error: BaseException) -> bool:
    """Whether a listing failed for want of the listing column (MySQL) or index (SQLite)."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if _sqlite(error):
        return "no such index" in reason(error)
    return error_code(error) == UNKNOWN_COLUMN


def is_transient(error: BaseException, *, write: bool) -> bool:
    """Whether the try that raised ``error`` may run again: see the module's docstring."""
    code, sqlite = error_code(error), _sqlite(error)
    if isinstance(error, NotConnected):
        return code in SQLITE_BUSY if sqlite else code not in ACCESS_DENIED | {UNKNOWN_DATABASE}
    if sqlite:
        text = reason(error)
        return code in SQLITE_BUSY or (not write and ("already exists" in text
                                                      or "UNIQUE constraint" in text))
    if code in ROLLED_BACK or (not write and code in CREATE_RACES):
        return True
    return _lost(error) and not (write and isinstance(error, CommitFailed))


def translate(error: BaseException, *, action: str, server: str) -> BaseException:
    """The chathistory error for ``error``, raised while doing ``action`` on ``server``.

    ``server`` is the URL without its password. No message repeats the
    statement's parameters (session ids, messages) or the password.
    """
    where = f"backend 'sqlalchemy' failed to {action} on {server}"
    inner = _unwrapped(error)
    if isinstance(inner, sa_exc.TimeoutError):
        return BackendUnavailableError(
            f"{where}: no pooled connection became free in time (every connection is busy; "
            "raise pool_size or max_overflow)")
    if not isinstance(inner, sa_exc.DBAPIError):
        return error
    text, code, sqlite = reason(error), error_code(error), _sqlite(error)
    if code in (SQLITE_REFUSED if sqlite else ACCESS_DENIED):
        return PermissionDeniedError(f"{where}: the database refused: {text}")
    if not sqlite and code == TRIGGER_NEEDS_SUPER:
        return PermissionDeniedError(
            f"{where}: the session catalog is counted by a trigger on the table, and with "
            "binary logging on the server lets only a user with SUPER create one: run "
            "create_collection() once as such a user (the application's user then needs "
            "no more), or set log_bin_trust_function_creators=1 on the server. "
            f"The server said: {text}")
    if not sqlite and code == UNKNOWN_DATABASE:
        return ConfigError(f"{where}: {text}")
    if sqlite and code == SQLITE_CANTOPEN:
        return BackendUnavailableError(f"{where}: cannot open the database file: {text}")
    if isinstance(error, NotConnected):
        return BackendUnavailableError(f"backend 'sqlalchemy' cannot connect to {server}: {text}")
    if _lost(error) and isinstance(error, CommitFailed) and action == "append":
        return BackendUnavailableError(
            f"{where}: the connection was lost while the batch was being committed. "
            "The batch was stored entirely or not at all (never in part); "
            f"read the session to know which. Cause: {text}")
    if _lost(error):
        return BackendUnavailableError(f"{where}: the connection was lost: {text}")
    if action == "append" and (code in (SQLITE_TOOBIG if sqlite else RECORD_REFUSED)
                               or isinstance(inner, sa_exc.DataError)):
        hint = (" (a MySQL/MariaDB table must be utf8mb4 to hold every character, and its "
                "message column LONGTEXT for messages over 64 KiB; max_allowed_packet "
                "bounds a batch)") if not sqlite else ""
        return RecordError(f"{where}: the database cannot store this batch: {text}{hint}")
    # PostgreSQL's drivers give the SQLSTATE: 42P01 is undefined_table.
    undefined = getattr(_driver_error(error), "sqlstate", None) == "42P01"
    if (not sqlite and code == NO_SUCH_TABLE) or (sqlite and "no such table" in text) \
            or undefined:
        # Reads never create anything: a missing table is said, in one line.
        return CollectionMissingError(
            f"{where}: {text} (nothing was created; create_collection() creates the table; "
            "ChatHistory calls it on first use)")
    if isinstance(inner, sa_exc.OperationalError):
        # Short of something (disk, locks, connections): unavailable, not repeated.
        return BackendUnavailableError(f"{where}: {text}")
    return ChatHistoryError(f"{where}: {type(_driver_error(error)).__name__}: {text}")
