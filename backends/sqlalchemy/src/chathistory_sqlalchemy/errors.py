"""SQLAlchemy's errors read as chathistory's, and which of them the core's retry may repeat.

A try is repeated only when nothing of it can have been committed: no
connection could be opened (``failed_while(error)`` is ``"connect"``; not a
refused login or an unknown database); the server rolled it back and said so
(deadlock, lock wait timeout, SQLite busy); or the connection was lost before
the commit was sent (the server rolls back what it was not told to commit). A
call that does not write (a read, or creating the table) is also repeated after
a lost connection or a race with another creator. A write whose connection is
lost during its commit (``"commit"``) may have committed: it is never repeated.
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
from chathistory.driver import failed_while

__all__ = ["error_code", "is_transient", "translate"]

# What a database's own error means: by MySQL/MariaDB error number or PostgreSQL SQLSTATE,
# and by SQLite's primary result code or the words of its message.
SERVER: dict[object, str] = {
    **dict.fromkeys((1044, 1045, 1142, 1143, 1227, 1698), "denied"), 1049: "no_database",
    **dict.fromkeys((1205, 1213), "rolled_back"),  # lock wait timeout, deadlock
    # A creator raced another: the table, column, key or version row exists,
    # information_schema skipped a table while another connection's DDL changed it, or
    # (1412) a transaction's snapshot is older than a table another creator just made.
    **dict.fromkeys((1050, 1060, 1061, 1062, 1684, 1412), "race"),
    1146: "no_table", "42P01": "no_table",  # 42P01: PostgreSQL's undefined_table
    1419: "no_super",  # CREATE TRIGGER, binary logging on, no log_bin_trust_function_creators
    **dict.fromkeys((2006, 2013, 2014, 2045, 2055, 1927, 1053, 1077, 1080), "lost"),
    **dict.fromkeys((1366, 1406, 1153, 1301), "too_big")}  # bad string, too long, packet
SQLITE: dict[object, str] = {
    5: "rolled_back", 6: "rolled_back", 3: "denied", 8: "denied", 23: "denied",
    14: "cannot_open", 18: "too_big", "no such table": "no_table",
    "already exists": "race", "UNIQUE constraint": "race"}


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
        text = str(driver)
    return (text.strip().split("\n")[0] or type(driver).__name__)[:500]


def _meaning(error: BaseException) -> str | None:
    """What the database said, as :data:`SERVER` or :data:`SQLITE` names it; ``lost`` too
    for a connection SQLAlchemy found gone."""
    driver, code = _driver_error(error), error_code(error)
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return "lost"
    if isinstance(driver, sqlite3.Error):
        text = reason(error)
        return SQLITE.get(code) or next((meaning for words, meaning in SQLITE.items()
                                         if isinstance(words, str) and words in text), None)
    return SERVER.get(code) or SERVER.get(getattr(driver, "sqlstate", None))


def is_transient(error: BaseException, *, write: bool) -> bool:
    """Whether the try that raised ``error`` may run again: see the module's docstring."""
    meaning, phase = _meaning(error), failed_while(error)
    if phase == "connect" and isinstance(error, sa_exc.DBAPIError):
        if isinstance(_driver_error(error), sqlite3.Error):  # a file that will not open stays so
            return meaning == "rolled_back"
        return meaning not in ("denied", "no_database")
    return meaning == "rolled_back" or (not write and meaning == "race") or (
        meaning == "lost" and not (write and phase == "commit"))


def translate(error: BaseException, *, action: str, server: str) -> BaseException:
    """The chathistory error for ``error``, raised while doing ``action`` on ``server``.

    ``server`` is the URL without its password. No message repeats the
    statement's parameters (session ids, messages) or the password.
    """
    where = f"backend 'sqlalchemy' failed to {action} on {server}"
    if isinstance(error, sa_exc.TimeoutError):
        return BackendUnavailableError(
            f"{where}: no pooled connection became free in time (every connection is busy; "
            "raise pool_size or max_overflow)")
    if not isinstance(error, sa_exc.DBAPIError):
        return error
    text, meaning, phase = reason(error), _meaning(error), failed_while(error)
    if meaning == "denied":
        return PermissionDeniedError(f"{where}: the database refused: {text}")
    if meaning == "no_super":
        return PermissionDeniedError(
            f"{where}: the session catalog is counted by a trigger on the table, and with "
            "binary logging on the server lets only a user with SUPER create one: run "
            "create_collection() once as such a user (the application's user then needs "
            "no more), or set log_bin_trust_function_creators=1 on the server. "
            f"The server said: {text}")
    if meaning == "no_database":
        return ConfigError(f"{where}: {text}")
    if meaning == "cannot_open":
        return BackendUnavailableError(f"{where}: cannot open the database file: {text}")
    if meaning == "no_table":  # reads never create anything: a missing table is said
        return CollectionMissingError(
            f"{where}: {text} (nothing was created; create_collection() creates the table; "
            "ChatHistory calls it on first use)")
    if phase == "connect":
        return BackendUnavailableError(f"backend 'sqlalchemy' cannot connect to {server}: {text}")
    if meaning == "lost" and phase == "commit" and action == "append":
        return BackendUnavailableError(
            f"{where}: the connection was lost while the batch was being committed. "
            "The batch was stored entirely or not at all (never in part); "
            f"read the session to know which. Cause: {text}")
    if meaning == "lost":
        return BackendUnavailableError(f"{where}: the connection was lost: {text}")
    if action == "append" and (meaning == "too_big" or isinstance(error, sa_exc.DataError)):
        hint = "" if isinstance(_driver_error(error), sqlite3.Error) else (
            " (a MySQL/MariaDB table must be utf8mb4 to hold every character, and its "
            "message column LONGTEXT for messages over 64 KiB; max_allowed_packet bounds "
            "a batch)")
        return RecordError(f"{where}: the database cannot store this batch: {text}{hint}")
    if isinstance(error, sa_exc.OperationalError):
        # Short of something (disk, locks, connections): unavailable, not repeated.
        return BackendUnavailableError(f"{where}: {text}")
    return ChatHistoryError(f"{where}: {type(_driver_error(error)).__name__}: {text}")
