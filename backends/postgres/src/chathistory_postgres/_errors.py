"""psycopg's errors turned into chathistory's, with no secret in any message."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from chathistory import (
    BackendUnavailableError,
    ChatHistoryError,
    ConfigError,
    PermissionDeniedError,
    RecordError,
)

__all__ = ["ConnectionLostError", "Server", "connection_lost", "is_retryable"]

BACKEND = "postgres"

# What a refused login looks like in libpq's message: at connect time psycopg
# gives no SQLSTATE, only the server's FATAL text.
_AUTH_FAILURE = re.compile(
    r"password authentication failed|authentication failed|role \".*\" does not exist|"
    r"no pg_hba\.conf entry|permission denied|password is required|"
    r"fe_sendauth: no password supplied|peer authentication failed",
    re.IGNORECASE,
)
_MISSING_DATABASE = re.compile(r"database \".*\" does not exist", re.IGNORECASE)


class ConnectionLostError(BackendUnavailableError):
    """The connection failed and running the call again is harmless: nothing was sent,
    or the statement is safe to repeat (a read, a delete, create-if-missing)."""


def connection_lost(error: psycopg.Error) -> bool:
    """Whether ``error`` means the connection itself failed (not just the statement)."""
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    # No SQLSTATE: libpq's own error (socket closed, reset, timed out). 08: connection
    # exception. 57P01-03: the server is shutting down, crashed or starting up.
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def is_retryable(error: BaseException) -> bool:
    """Whether ``retry_transient`` may run the call again."""
    return isinstance(error, ConnectionLostError)


class Server:
    """Names the server in messages (host, port, database) and scrubs secrets from them."""

    def __init__(self, host: str, port: str, dbname: str, secrets: Iterable[str] = ()) -> None:
        self.description = f"{host}:{port}/{dbname}"
        # Longest first, so a password inside a whole conninfo is not half-scrubbed.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    @classmethod
    def from_params(cls, params: Mapping[str, object], secrets: Iterable[str] = ()) -> Server:
        host = str(params.get("host") or params.get("hostaddr") or "localhost")
        port = str(params.get("port") or "5432")
        dbname = str(params.get("dbname") or params.get("user") or "(default database)")
        return cls(host, port, dbname, secrets)

    @classmethod
    def from_connection(cls, connection: psycopg.Connection | psycopg.AsyncConnection
                        ) -> Server:
        try:
            info = connection.info
            return cls(info.host, str(info.port), info.dbname)
        except psycopg.Error:
            return cls("(closed connection)", "?", "?")

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _reason(self, error: BaseException) -> str:
        diag = getattr(error, "diag", None)
        primary = getattr(diag, "message_primary", None) if diag is not None else None
        text = primary or str(error) or type(error).__name__
        # libpq's connection messages repeat "connection to server at ... failed:".
        text = text.strip().split("\n")[0]
        text = re.sub(r"^connection failed: ", "", text)
        text = re.sub(r"^connection to server at \"[^\"]*\"(?: \([^)]*\))?, port \d+ failed: ",
                      "", text)
        return self.scrub(text.replace("FATAL:  ", "").strip())

    def connect_error(self, error: psycopg.Error) -> ChatHistoryError:
        """The error for a connection that could not be opened."""
        reason = self._reason(error)
        where = f"backend {BACKEND!r} cannot connect to {self.description}"
        if _AUTH_FAILURE.search(str(error)):
            return PermissionDeniedError(f"{where}: the server refused the login: {reason}")
        if _MISSING_DATABASE.search(str(error)):
            return ConfigError(f"{where}: {reason}")
        return ConnectionLostError(f"{where}: {reason}")

    def pool_timeout(self, timeout: float) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"backend {BACKEND!r} got no connection to {self.description} within {timeout:g} s "
            "(the server is down or restarting, or every pooled connection is busy)"
        )

    def translate(self, error: psycopg.Error, action: str, *, sent: bool,
                  repeatable: bool) -> ChatHistoryError:
        """The chathistory error for ``error``, raised while doing ``action``.

        ``sent`` says whether the statement may have reached the server;
        ``repeatable`` whether running it twice is harmless.
        """
        reason = self._reason(error)
        where = f"backend {BACKEND!r} failed to {action} on {self.description}"
        if isinstance(error, PoolTimeout):
            return BackendUnavailableError(
                f"{where}: no connection became available in time "
                "(the server is down or restarting, or every pooled connection is busy)")
        if isinstance(error, pg_errors.InsufficientPrivilege):
            return PermissionDeniedError(f"{where}: {reason}")
        if connection_lost(error):
            if not sent or repeatable:
                return ConnectionLostError(f"{where}: the connection was lost: {reason}")
            return BackendUnavailableError(
                f"{where}: the connection was lost while the batch was being written. "
                "The batch was stored entirely or not at all (never in part); "
                f"read the session to know which. Cause: {reason}"
            )
        if isinstance(error, pg_errors.DataError) and action == "append":
            return RecordError(f"PostgreSQL cannot store this message as jsonb: {reason}")
        if isinstance(error, pg_errors.ProgramLimitExceeded):
            return ChatHistoryError(
                f"{where}: {reason} (a session id longer than about 2,700 bytes does not fit "
                "the (session_id, id) index)")
        if isinstance(error, psycopg.OperationalError):
            # The server is short of something (disk, memory, connection slots) or
            # cancelled the statement (statement_timeout): transient, not repeated.
            return BackendUnavailableError(f"{where}: {reason}")
        if isinstance(error, pg_errors.UndefinedTable):
            return ChatHistoryError(
                f"{where}: {reason} (create_collection() creates the table; "
                "ChatHistory calls it on first use)")
        return ChatHistoryError(f"{where}: {type(error).__name__}: {reason}")
