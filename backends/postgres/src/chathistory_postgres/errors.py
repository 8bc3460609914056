"""psycopg's errors read as chathistory's, and which of them the runner may repeat.

A call is repeated only when harmless: nothing reached the server (no
connection: :class:`ConnectFailed`); the server rolled the statement back and
said so (a serialization failure, a deadlock); or the call is safe to run
twice (``write=False``: not an append) and the connection was lost. An append
whose connection is lost after it was sent may have committed: never repeated.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from chathistory import (
    BackendUnavailableError,
    ChatHistoryError,
    CollectionMissingError,
    ConfigError,
    PermissionDeniedError,
    RecordError,
)

__all__ = ["ConnectFailed", "connect_error", "is_transient", "translate"]

# An error reply, the transaction rolled back: serialization_failure, deadlock_detected.
_ROLLED_BACK = frozenset({"40001", "40P01"})
_POOL_ERRORS = (PoolTimeout, PoolClosed, TooManyRequests)
# A refused login in libpq's message: at connect time there is no SQLSTATE, only text.
_REFUSED_LOGIN = re.compile(
    r"authentication failed|role \".*\" does not exist|no pg_hba\.conf entry|"
    r"permission denied|password is required|no password supplied", re.IGNORECASE)
_MISSING_DATABASE = re.compile(r"database \".*\" does not exist", re.IGNORECASE)


class ConnectFailed(BackendUnavailableError):
    """No connection to the server could be opened: nothing was sent, any call may be repeated."""


def reason(error: psycopg.Error) -> str:
    """The first line of the server's or libpq's message, without libpq's preamble."""
    text = (error.diag.message_primary or str(error) or type(error).__name__).strip().split("\n")[0]
    text = re.sub(r"^connection (?:failed|to server at \"[^\"]*\"(?: \([^)]*\))?, "
                  r"port \d+ failed): ", "", text)
    return text.replace("FATAL:  ", "").strip()


def connect_error(error: psycopg.Error, server: str) -> ChatHistoryError:
    """The error for a connection that could not be opened to ``server`` (host:port/db)."""
    where = f"backend 'postgres' cannot connect to {server}"
    if _REFUSED_LOGIN.search(str(error)):
        return PermissionDeniedError(f"{where}: the server refused the login: {reason(error)}")
    if _MISSING_DATABASE.search(str(error)):
        return ConfigError(f"{where}: {reason(error)}")
    return ConnectFailed(f"{where}: {reason(error)}")


def _connection_lost(error: psycopg.Error) -> bool:
    """Whether the connection itself failed (not just the statement)."""
    if not isinstance(error, psycopg.OperationalError) or isinstance(error, _POOL_ERRORS):
        return False
    state = error.sqlstate
    # No SQLSTATE: libpq's own error (socket closed, reset, timed out). 08: connection
    # exception. 57P01-03: the server is shutting down, crashed or starting up.
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def is_transient(error: BaseException, *, write: bool = False) -> bool:
    """Whether the call that raised ``error`` may run again: see the module's docstring."""
    if isinstance(error, ConnectFailed):
        return True
    if not isinstance(error, psycopg.Error):
        return False
    return error.sqlstate in _ROLLED_BACK or (not write and _connection_lost(error))


def translate(error: BaseException, *, action: str, server: str) -> BaseException:
    """The chathistory error for ``error``, raised while doing ``action`` on ``server``."""
    if not isinstance(error, psycopg.Error):
        return error
    where = f"backend 'postgres' failed to {action} on {server}"
    text = reason(error)
    if isinstance(error, PoolTimeout):
        return BackendUnavailableError(
            f"{where}: no connection became available in time (the server is down or "
            "restarting, or every pooled connection is busy)")
    if isinstance(error, pg_errors.InsufficientPrivilege):
        return PermissionDeniedError(f"{where}: {text}")
    if _connection_lost(error):
        return BackendUnavailableError(
            f"{where}: the connection was lost while the batch was being written. The batch "
            "was stored entirely or not at all (never in part); read the session to know "
            f"which. Cause: {text}" if action == "append"
            else f"{where}: the connection was lost: {text}")
    if isinstance(error, pg_errors.DataError) and action == "append":
        return RecordError(f"PostgreSQL cannot store this message as jsonb: {text}")
    if isinstance(error, pg_errors.ProgramLimitExceeded):
        return ChatHistoryError(
            f"{where}: {text} (a session id longer than about 2,700 bytes does not fit "
            "the (session_id, id) index)")
    if isinstance(error, psycopg.OperationalError):
        # The server is short of something (disk, memory, connection slots) or
        # cancelled the statement (statement_timeout): unavailable, not repeated.
        if error.sqlstate == "53200" and action in ("append", "restore summaries"):
            # Out of lock slots: a bulk write locks each of its sessions until it commits.
            text += (" (each session a call writes holds a lock until it commits: write "
                     "fewer sessions per call, e.g. a smaller --chunk for copy and import, or "
                     "raise the server's max_locks_per_transaction)")
        return BackendUnavailableError(f"{where}: {text}")
    if isinstance(error, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
        # Reads never create anything: a missing table is said, in one line.
        return CollectionMissingError(
            f"{where}: {text} (nothing was created; check the schema= and table= options; "
            "a first write, or create_collection(), creates the table, and adds "
            "<table>_sessions to a table an older version made)")
    return ChatHistoryError(f"{where}: {type(error).__name__}: {text}")
