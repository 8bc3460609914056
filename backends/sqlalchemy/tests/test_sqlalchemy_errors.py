"""Failures reach the application as chathistory errors; only what is safe is repeated.

Reads create nothing: a missing table or SQLite file is CollectionMissingError.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from chathistory_sqlalchemy.errors import is_transient, translate
from sqlalchemy import Connection, Engine, event, exc, inspect, text

from chathistory import (
    BackendUnavailableError,
    ChatHistoryError,
    CollectionMissingError,
    RecordError,
)
from chathistory.driver import Phase
from chathistory.runner import mark_failed_while
from chathistory.testing import numbered_records


def _mysql(code: int, message: str, statement: str | None = "INSERT ...") -> exc.DBAPIError:
    return exc.DBAPIError.instance(statement, {}, pymysql.err.OperationalError(code, message),
                                   pymysql.err.Error)


def _lost(phase: Phase = "send") -> exc.DBAPIError:
    """A lost connection, as the runner marks it when it came while ``phase``."""
    return mark_failed_while(_mysql(2013, "Lost connection to server during query"), phase)


def test_what_may_be_repeated() -> None:
    refused = _mysql(2003, "Can't connect to MySQL server", statement=None)
    assert is_transient(mark_failed_while(refused, "connect"), write=True)  # nothing was sent
    assert is_transient(_mysql(1213, "Deadlock found"), write=True)  # rolled back
    assert is_transient(_mysql(1205, "Lock wait timeout"), write=True)
    assert is_transient(_lost(), write=False)                       # a read: repeat it
    assert is_transient(_lost(), write=True)                        # not committed
    assert not is_transient(_lost("commit"), write=True)            # may have committed
    assert is_transient(_lost("commit"), write=False)
    denied = _mysql(1045, "Access denied", statement=None)
    assert not is_transient(mark_failed_while(denied, "connect"), write=False)
    pool_timeout = exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached")
    assert not is_transient(mark_failed_while(pool_timeout, "connect"), write=False)
    assert is_transient(_mysql(1050, "Table exists"), write=False)  # raced another creator
    assert not is_transient(_mysql(1050, "Table exists"), write=True)
    busy = exc.DBAPIError.instance("INSERT", {}, sqlite3.OperationalError(
        "database is locked"), sqlite3.Error)
    busy.orig.sqlite_errorcode = 5  # type: ignore[union-attr]
    assert is_transient(busy, write=True)
    closed = exc.DBAPIError.instance("SELECT", {}, sqlite3.ProgrammingError(
        "Cannot operate on a closed database."), sqlite3.Error, connection_invalidated=True)
    assert is_transient(closed, write=False)  # a lost connection, as on a server
    assert not is_transient(mark_failed_while(closed, "commit"), write=True)
    assert not is_transient(RecordError("bad"), write=False)


def test_translations_name_the_server_and_never_the_parameters() -> None:
    error = _lost("commit")
    error.params = {"session_id": "private-session", "message": "private text"}
    translated = translate(error, action="append", server="mysql+pymysql://u:***@db/chat")
    assert isinstance(translated, BackendUnavailableError)
    assert "stored entirely or not at all" in str(translated)
    assert "private" not in str(translated)
    too_long = translate(_mysql(1406, "Data too long for column 'message'"),
                         action="append", server="db")
    assert isinstance(too_long, RecordError) and "LONGTEXT" in str(too_long)


@pytest.fixture
def backend(mysql_url: str, mysql_table: str) -> Iterator[SQLAlchemyBackend]:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table, pool_size=1,
                                             max_overflow=0, pool_pre_ping=False)
    backend.create_collection()
    backend.append("s", numbered_records(2))
    yield backend
    backend.close()


def _kill_pooled_connection(backend: SQLAlchemyBackend, admin: Engine) -> None:
    """Kill the one pooled connection of ``backend`` from another session."""
    with backend.client.engine().connect() as connection:
        connection_id = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    with admin.connect() as connection:
        connection.execute(text(f"KILL CONNECTION {int(connection_id)}"))


def test_a_read_on_a_killed_connection_is_repeated_on_a_new_one(
    backend: SQLAlchemyBackend, mysql_admin: Engine
) -> None:
    _kill_pooled_connection(backend, mysql_admin)
    assert len(backend.fetch("s")) == 2


def test_a_write_whose_connection_is_lost_before_its_commit_is_repeated_once(
    backend: SQLAlchemyBackend, mysql_admin: Engine
) -> None:
    _kill_pooled_connection(backend, mysql_admin)
    backend.append("s", numbered_records(1, prefix="late"))
    assert [r["data"]["content"] for r in backend.fetch("s")] == ["m0", "m1", "late0"]


def test_a_write_whose_commit_is_lost_is_not_repeated_and_says_so(
    backend: SQLAlchemyBackend, mysql_admin: Engine
) -> None:
    killed: list[int] = []

    @event.listens_for(backend.client.engine(), "commit")
    def kill_before_the_first_commit(connection: Connection) -> None:
        if not killed:  # a repeat of the append would commit, and store the batch
            killed.append(connection.connection.dbapi_connection.thread_id())  # type: ignore[union-attr]
            with mysql_admin.connect() as admin:
                admin.execute(text(f"KILL CONNECTION {killed[0]}"))

    with pytest.raises(BackendUnavailableError, match="stored entirely or not at all"):
        backend.append("s", numbered_records(3, prefix="late"))
    event.remove(backend.client.engine(), "commit", kill_before_the_first_commit)
    assert [r["data"]["content"] for r in backend.fetch("s")] == ["m0", "m1"]


def test_pre_ping_replaces_a_killed_connection_before_a_write(
    mysql_url: str, mysql_table: str, mysql_admin: Engine
) -> None:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table, pool_size=1,
                                             max_overflow=0)
    backend.create_collection()
    _kill_pooled_connection(backend, mysql_admin)
    backend.append("s", numbered_records(1))
    assert len(backend.fetch("s")) == 1
    backend.close()


def test_a_missing_table_says_how_to_create_it(mysql_url: str, mysql_table: str) -> None:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    with pytest.raises(ChatHistoryError, match=r"create_collection\(\) creates the table"):
        backend.fetch("s")
    backend.close()


def test_a_missing_table_is_collection_missing_and_reading_creates_it_not(
    mysql_url: str, mysql_table: str, mysql_admin: Engine
) -> None:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    for read in (lambda: backend.fetch("s"), lambda: asyncio.run(backend.afetch("s", limit=2))):
        with pytest.raises(CollectionMissingError, match="nothing was created"):
            read()
    backend.close()
    assert not inspect(mysql_admin).has_table(mysql_table)


def test_a_sqlite_file_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    backend = SQLAlchemyBackend.from_options(url=f"sqlite:///{path}")
    calls = [lambda: backend.fetch("s"), lambda: backend.append("s", numbered_records(1)),
             lambda: backend.clear("s"), lambda: asyncio.run(backend.afetch("s")),
             lambda: asyncio.run(backend.aappend("s", numbered_records(1)))]
    for call in calls:
        with pytest.raises(CollectionMissingError, match=r"no database at .*typo\.db"):
            call()
    assert not path.exists()
    backend.create_collection()  # the one call that creates it
    backend.append("s", numbered_records(1))
    assert asyncio.run(backend.afetch("s")) == numbered_records(1)
    backend.close()


def test_a_table_made_after_a_readers_snapshot_is_a_race_repeated_on_reads(
        mysql_admin: Engine, mysql_table: str) -> None:
    """InnoDB's 1412: a transaction whose snapshot is older than a table another
    connection has just created (processes creating one table at once meet it) may not
    read it. Run again, the read sees the table."""
    with mysql_admin.connect() as reader, mysql_admin.connect() as creator:
        reader.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        creator.exec_driver_sql(f"CREATE TABLE `{mysql_table}` (id INT PRIMARY KEY)")
        with pytest.raises(exc.OperationalError) as raised:
            reader.exec_driver_sql(f"SELECT id FROM `{mysql_table}`")
        reader.rollback()
    assert raised.value.orig.args[0] == 1412  # type: ignore[union-attr]
    assert is_transient(raised.value, write=False)
    assert not is_transient(raised.value, write=True)
