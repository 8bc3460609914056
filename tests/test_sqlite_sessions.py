"""The sqlite backend's sessions table: counts and write times, peers' writes included."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from chathistory import CollectionMissingError
from chathistory.backends.sqlite import SqliteBackend
from chathistory.testing import numbered_records


def open_backend(path: Path | str) -> SqliteBackend:
    return SqliteBackend(SqliteBackend.Config(path=str(path)))


def test_reading_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "misspelt.sqlite3"
    backend = open_backend(path)
    with pytest.raises(CollectionMissingError, match=r"no database at .*nothing was created"):
        backend.fetch("s")
    with pytest.raises(CollectionMissingError):
        backend.list_sessions()
    assert not path.exists()


def test_reading_a_file_without_the_table_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    sqlite3.connect(path).close()
    backend = open_backend(path)
    with pytest.raises(CollectionMissingError, match="has no table 'message_store'"):
        backend.fetch("s")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_table_from_before_the_sessions_table_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE message_store (id INTEGER PRIMARY KEY, "
                           "session_id TEXT NOT NULL, message TEXT NOT NULL)")
        connection.executemany("INSERT INTO message_store (session_id, message) VALUES (?, ?)",
                               [("a", '{"type":"human","data":{"content":"x"}}')] * 3)
    backend = open_backend(path)
    backend.create_collection()
    backend.create_collection()  # the backfill runs once
    (info,) = backend.list_sessions()
    assert (info.session_id, info.messages) == ("a", 3)
    backend.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_writes_by_sql_chat_message_history_are_counted_and_timed(sqlite_path: str) -> None:
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    backend = open_backend(sqlite_path)
    backend.create_collection()
    before = datetime.now(UTC) - timedelta(seconds=2)
    theirs = SQLChatMessageHistory("theirs", connection=f"sqlite:///{sqlite_path}")
    theirs.add_messages([HumanMessage("hi"), AIMessage("hello")])
    backend.append("ours", numbered_records(1))
    listed = {info.session_id: info for info in backend.list_sessions()}
    assert listed["theirs"].messages == 2 and listed["ours"].messages == 1
    written = backend.last_write("theirs")
    assert written is not None and written > before
    theirs.clear()
    assert [info.session_id for info in backend.list_sessions()] == ["ours"]
    backend.close()


def test_listing_and_a_prune_that_deletes_nothing_use_the_sessions_indexes(
        sqlite_backend: SqliteBackend, sqlite_path: str) -> None:
    sqlite_backend.append("s", numbered_records(2))
    with sqlite3.connect(sqlite_path) as connection:
        def plan(sql: str, *parameters: object) -> str:
            return " | ".join(row[3] for row in
                              connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters))

        prune = plan('SELECT count(*) FROM "message_store_sessions" WHERE last_write < ?', 0.0)
        listing = plan('SELECT session_id, messages, last_write FROM "message_store_sessions" '
                       "WHERE session_id > ? ORDER BY session_id LIMIT ?", "", 100)
    assert "USING COVERING INDEX message_store_sessions_last_write (last_write<?)" in prune
    assert "USING INDEX sqlite_autoindex_message_store_sessions_1 (session_id>?)" in listing
    assert "TEMP B-TREE" not in listing


def test_a_naive_cutoff_is_refused(sqlite_backend: SqliteBackend) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sqlite_backend.delete_sessions_before(datetime.now())
