"""SQLAlchemy's errors read as chathistory's, and which of them ``retry_transient`` may repeat.

A call is repeated only when that is harmless:

- nothing reached the server: no connection could be opened (SQLAlchemy
  raises those with no ``statement``), or the pool lent none;
- the server rolled the statement or transaction back and said so: a
  deadlock (MySQL 1213) or a lock wait timeout (1205, which may undo only the
  statement: the failed call's transaction is then rolled back whole, so
  nothing of it stays), or SQLite was busy or locked (nothing was written);
- creating or upgrading the table (a step of its schema, or the row recording
  it) raced another process doing the same (it now exists);
- or the call does not write (``write=False``: fetch, clear, create, each
  safe to run twice) and the connection was lost.

An append whose connection is lost after the statement was sent is not
repeated: it may have committed, and a repeat would store the batch twice.
"""

from __future__ import annotations

import sqlite3
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

__all__ = ["ConnectFailed", "ListingIndexMissing", "error_code", "is_transient", "reason",
           "translate"]

# MySQL/MariaDB server and client error numbers.
ACCESS_DENIED = frozenset({1044, 1045, 1142, 1143, 1227, 1698})
UNKNOWN_DATABASE = 1049
ROLLED_BACK = frozenset({1205, 1213})  # lock wait timeout, deadlock
# Creating raced another creator: table, column, key name, version row exists; a table
# skipped by information_schema while another connection's DDL changes it.
CREATE_RACES = frozenset({1050, 1060, 1061, 1062, 1684})
UNKNOWN_COLUMN = 1054
CONNECTION_LOST = frozenset({2006, 2013, 2014, 2045, 2055, 1927, 1053, 1077, 1080})
CANNOT_CONNECT = frozenset({2002, 2003, 2005, 2026, 1040, 1129, 1130})
NO_SUCH_TABLE = 1146
RECORD_REFUSED = frozenset({1366, 1406, 1153, 1301})  # bad string, too long, packet too big
# SQLite: SQLITE_BUSY, SQLITE_LOCKED; SQLITE_READONLY, SQLITE_PERM, SQLITE_AUTH;
# SQLITE_CANTOPEN; SQLITE_TOOBIG.
SQLITE_BUSY = frozenset({5, 6})
SQLITE_REFUSED = frozenset({8, 3, 23})
SQLITE_CANTOPEN = 14
SQLITE_TOOBIG = 18


class ConnectFailed(BackendUnavailableError):
    """No connection to the database could be opened: nothing was sent, any call may repeat."""


class ListingIndexMissing(ChatHistoryError):
    """A page of sessions could not be read through the listing index: the table lacks it.

    (MySQL's ``session_key`` column, or SQLite's index; ``create_collection``
    adds them.) The backend then reads the page from the table itself.
    """


def _driver_error(error: BaseException) -> BaseException:
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
        text = str(driver) if not isinstance(driver, sa_exc.StatementError) else \
            str(driver.orig or type(driver).__name__)
    return (text.strip().split("\n")[0] or type(driver).__name__)[:500]


def _sqlite(error: BaseException) -> bool:
    return isinstance(_driver_error(error), sqlite3.Error)


def _not_sent(error: sa_exc.DBAPIError) -> bool:
    """A failure to connect (SQLAlchemy gives no statement then), but not a refused login."""
    if not isinstance(error, sa_exc.OperationalError) or error.statement is not None:
        return False
    code = error_code(error)
    if _sqlite(error):
        return code in SQLITE_BUSY
    return code not in ACCESS_DENIED and code != UNKNOWN_DATABASE


def is_transient(error: BaseException, *, write: bool = False, create: bool = False) -> bool:
    """Whether the call that raised ``error`` may run again: see the module's docstring."""
    if isinstance(error, ConnectFailed):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if _not_sent(error):
        return True
    code = error_code(error)
    if _sqlite(error):
        if code in SQLITE_BUSY:
            return True
        return create and ("already exists" in reason(error)
                           or "UNIQUE constraint failed" in reason(error))
    if code in ROLLED_BACK or (create and code in CREATE_RACES):
        return True
    return not write and (error.connection_invalidated or code in CONNECTION_LOST)


def translate(error: BaseException, *, action: str, server: str) -> BaseException:
    """The chathistory error for ``error``, raised while doing ``action`` on ``server``.

    ``server`` is the URL without its password. No message repeats the
    statement's parameters (session ids, messages) or the password.
    """
    if isinstance(error, sa_exc.TimeoutError):
        return BackendUnavailableError(
            f"backend 'sqlalchemy' failed to {action} on {server}: no pooled connection "
            "became free in time (every connection is busy; raise pool_size or max_overflow)")
    if not isinstance(error, sa_exc.DBAPIError):
        return error
    where = f"backend 'sqlalchemy' failed to {action} on {server}"
    text, code, sqlite = reason(error), error_code(error), _sqlite(error)
    if (not sqlite and code in ACCESS_DENIED) or (sqlite and code in SQLITE_REFUSED):
        return PermissionDeniedError(f"{where}: the database refused: {text}")
    if not sqlite and code == UNKNOWN_DATABASE:
        return ConfigError(f"{where}: {text}")
    if sqlite and code == SQLITE_CANTOPEN:
        return BackendUnavailableError(f"{where}: cannot open the database file: {text}")
    if error.statement is None and isinstance(error, sa_exc.OperationalError):
        return ConnectFailed(f"backend 'sqlalchemy' cannot connect to {server}: {text}")
    lost = error.connection_invalidated or (not sqlite and code in CONNECTION_LOST)
    if lost and action == "append":
        return BackendUnavailableError(
            f"{where}: the connection was lost while the batch was being written. "
            "The batch was stored entirely or not at all (never in part); "
            f"read the session to know which. Cause: {text}")
    if lost:
        return BackendUnavailableError(f"{where}: the connection was lost: {text}")
    if action == "append" and ((not sqlite and code in RECORD_REFUSED)
                               or (sqlite and code == SQLITE_TOOBIG)
                               or isinstance(error, sa_exc.DataError)):
        hint = (" (a MySQL/MariaDB table must be utf8mb4 to hold every character, and its "
                "message column LONGTEXT for messages over 64 KiB; max_allowed_packet "
                "bounds a batch)") if not sqlite else ""
        return RecordError(f"{where}: the database cannot store this batch: {text}{hint}")
    if (not sqlite and code == NO_SUCH_TABLE) or (sqlite and "no such table" in text):
        # Reads never create anything: a missing table is said, in one line.
        return CollectionMissingError(
            f"{where}: {text} (nothing was created; create_collection() creates the table; "
            "ChatHistory calls it on first use)")
    if action == "list sessions" and ((not sqlite and code == UNKNOWN_COLUMN)
                                      or (sqlite and "no such index" in text)):
        return ListingIndexMissing(f"{where}: {text}")
    if isinstance(error, sa_exc.OperationalError):
        # Short of something (disk, locks, connections): unavailable, not repeated.
        return BackendUnavailableError(f"{where}: {text}")
    return ChatHistoryError(f"{where}: {type(_driver_error(error)).__name__}: {text}")
