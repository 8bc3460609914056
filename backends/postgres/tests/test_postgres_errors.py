"""What is repeated, and how psycopg's errors read: errors.is_transient and errors.translate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from chathistory_postgres.errors import ConnectFailed, is_transient, translate
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from chathistory import (
    BackendUnavailableError,
    ChatHistoryError,
    CollectionMissingError,
    PermissionDeniedError,
    RecordError,
    get_backend,
)
from chathistory.testing import numbered_records

LOST = psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.mark.parametrize(("error", "read", "write"), [
    # Nothing reached the server: any call may run again.
    (ConnectFailed("cannot connect"), True, True),
    # The server answered with an error and rolled the statement back.
    (pg_errors.SerializationFailure("could not serialize"), True, True),
    (pg_errors.DeadlockDetected("deadlock detected"), True, True),
    # The connection was lost with the statement sent: a read runs again, a write
    # may have committed and is not repeated.
    (LOST, True, False),
    (pg_errors.AdminShutdown("terminating connection"), True, False),
    (pg_errors.ConnectionFailure("connection failure"), True, False),
    # The pool already waited its timeout; the server refused; a bug.
    (PoolTimeout("couldn't get a connection"), False, False),
    (pg_errors.InsufficientPrivilege("permission denied"), False, False),
    (pg_errors.QueryCanceled("canceling statement due to statement timeout"), False, False),
    (pg_errors.UndefinedTable("relation does not exist"), False, False),
    (ValueError("not a driver error"), False, False),
])
def test_what_may_run_again(error: BaseException, read: bool, write: bool) -> None:
    assert is_transient(error) is read
    assert is_transient(error, write=True) is write


def test_translations_name_the_server_and_the_action() -> None:
    server = "db.internal:5432/chat"
    lost_append = translate(LOST, action="append", server=server)
    assert isinstance(lost_append, BackendUnavailableError)
    assert "stored entirely or not at all" in str(lost_append)
    assert server in str(lost_append) and "append" in str(lost_append)
    assert isinstance(translate(LOST, action="read", server=server), BackendUnavailableError)
    assert isinstance(translate(PoolTimeout("x"), action="read", server=server),
                      BackendUnavailableError)
    assert isinstance(translate(pg_errors.InsufficientPrivilege("permission denied"),
                                action="clear", server=server), PermissionDeniedError)
    assert isinstance(translate(pg_errors.UntranslatableCharacter("\\u0000"),
                                action="append", server=server), RecordError)
    undefined = translate(pg_errors.UndefinedTable("no such table"), action="read", server=server)
    assert isinstance(undefined, ChatHistoryError) and "create_collection()" in str(undefined)
    error = ConnectFailed("already ours")
    assert translate(error, action="read", server=server) is error


def test_catalog_writes_name_what_they_were_doing(backend: PostgresBackend) -> None:
    """An error of update_session, erase_sessions or restore_summaries says so, not "read"."""
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: backend.update_session("s", title="t"), "update a session"),
        (lambda: backend.erase_sessions(["s"]), "erase sessions")]
    for call, action in calls:
        with pytest.raises(CollectionMissingError) as raised:
            call()  # the table was never created
        assert f"failed to {action} on " in str(raised.value)


def test_a_failed_connect_is_retried_and_each_warning_names_the_server_and_cause(
        caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was sent, so even an append is tried again. The core's warning for each
    retry quotes the error the try raised: ours names the server as the options give it
    (host:port/db, never the password). libpq's own text would not always: a connect
    timeout reads only "connection timeout expired"."""
    password = "s3cr3t-Pa55w0rd"
    url = f"postgresql://postgres:{password}@127.0.0.1:1/test"  # nothing listens on port 1
    backend = get_backend("postgres", conninfo=url)
    caplog.set_level(logging.WARNING, logger="chathistory_postgres")
    calls: list[Callable[[], object]] = [
        lambda: backend.append("s", numbered_records(1)),
        lambda: asyncio.run(backend.aappend("s", numbered_records(1))),
    ]
    for call in calls:
        caplog.clear()
        with pytest.raises(BackendUnavailableError,
                           match=r"after 4 attempts: cannot connect to 127\.0\.0\.1:1/test: "):
            call()
        # Only the backend's: others share the root handler (opentelemetry's SDK, when
        # installed, warns of a shut-down processor at an unrelated moment).
        warnings = [record.getMessage() for record in caplog.records
                    if record.name == "chathistory_postgres"]
        assert len(warnings) == 3, warnings
        for warning in warnings:
            assert "append failed on attempt" in warning
            assert "cannot connect to 127.0.0.1:1/test: " in warning and "refused" in warning
            assert password not in warning
    backend.close()
