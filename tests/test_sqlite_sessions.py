"""The sqlite backend's sessions table: counts and write times, peers' writes included."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from chathistory import BackendUnavailableError, CollectionMissingError
from chathistory.backends.sqlite import SqliteBackend, migrations
from chathistory.testing import numbered_records
from chathistory.transfer import export_sessions


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
    # The catalog counts and times their writes too, and lists them by owner once set.
    summary = backend.update_session("theirs", owner="ada")
    assert summary.messages == 2 and summary.updated_at == written
    assert before < summary.created_at <= summary.updated_at
    theirs.add_messages([HumanMessage("again")])
    (listed_summary,) = backend.list_summaries(owner="ada").summaries
    assert listed_summary.messages == 3 and listed_summary.updated_at >= written
    theirs.clear()
    assert [info.session_id for info in backend.list_sessions()] == ["ours"]
    assert backend.list_summaries(owner="ada").summaries == []
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
                       "WHERE session_id > ? AND messages > 0 ORDER BY session_id LIMIT ?",
                       "", 100)
    assert "USING COVERING INDEX message_store_sessions_updated (last_write<?)" in prune
    assert "USING INDEX sqlite_autoindex_message_store_sessions_1 (session_id>?)" in listing
    assert "TEMP B-TREE" not in listing


def test_a_naive_cutoff_is_refused(sqlite_backend: SqliteBackend) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sqlite_backend.delete_sessions_before(datetime.now())


# The layout the release before the catalog made (its create_collection, statement by statement).
PREVIOUS_RELEASE_DDL = [
    "CREATE TABLE message_store (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, "
    "message TEXT NOT NULL)",
    'CREATE INDEX "message_store_session_id_id" ON message_store (session_id, id)',
    'CREATE TABLE "message_store_sessions" (session_id TEXT PRIMARY KEY, '
    "messages INTEGER NOT NULL, last_write REAL NOT NULL)",
    'CREATE INDEX "message_store_sessions_last_write" ON "message_store_sessions" (last_write)',
    'CREATE TRIGGER "message_store_count_insert" AFTER INSERT ON message_store BEGIN '
    'INSERT INTO "message_store_sessions" (session_id, messages, last_write) '
    "VALUES (NEW.session_id, 1, (julianday('now') - 2440587.5) * 86400.0) "
    "ON CONFLICT (session_id) DO UPDATE SET messages = messages + 1, "
    "last_write = excluded.last_write; END",
    'CREATE TRIGGER "message_store_count_delete" AFTER DELETE ON message_store BEGIN '
    'UPDATE "message_store_sessions" SET messages = messages - 1 '
    'WHERE session_id = OLD.session_id; DELETE FROM "message_store_sessions" '
    "WHERE session_id = OLD.session_id AND messages <= 0; END",
]


OLD_WRITE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def previous_release_file(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A file as the release before the catalog left it, every session last written at
    OLD_WRITE."""
    with sqlite3.connect(path) as connection:
        for statement in PREVIOUS_RELEASE_DDL:
            connection.execute(statement)
        connection.executemany("INSERT INTO message_store (session_id, message) VALUES (?, ?)",
                               rows)
        connection.execute('UPDATE "message_store_sessions" SET last_write = ?',
                           (OLD_WRITE.timestamp(),))
    connection.close()
    return path


def test_a_database_of_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    old_write = OLD_WRITE
    path = previous_release_file(tmp_path / "previous.sqlite3",
                                 [("a", '{"type":"human","data":{"content":"x"}}')] * 3)
    before = path.read_bytes()
    backend = open_backend(path)
    # A read creates nothing, not even an upgrade: it reads what the upgrade will make.
    (read,) = backend.list_summaries().summaries
    assert (read.session_id, read.owner, read.title, read.metadata, read.messages) == \
        ("a", None, None, {}, 3)
    assert read.created_at == read.updated_at == old_write
    assert backend.session_summaries(["a", "b"]) == {"a": read}
    assert backend.list_summaries(owner="ada").summaries == []
    assert backend.list_summaries(where={"k": "v"}).summaries == []
    with pytest.raises(CollectionMissingError, match="create_collection"):
        backend.update_session("a", title="needs the upgrade")  # a write says what to do
    assert path.read_bytes() == before
    backend.create_collection()
    (summary,) = backend.list_summaries().summaries
    assert (summary.session_id, summary.messages) == ("a", 3)
    assert summary.created_at == summary.updated_at == old_write  # its age is kept
    backend.update_session("a", owner="ada", title="Kept")
    backend.append("a", numbered_records(1))
    (summary,) = backend.list_summaries(owner="ada").summaries
    assert summary.messages == 4 and summary.created_at == old_write
    backend.close()
    with sqlite3.connect(path) as connection:
        versions = connection.execute("SELECT version FROM message_store_migrations").fetchall()
    assert versions == [(version,) for version in range(len(migrations("message_store")))]
    again = open_backend(path)
    again.create_collection()  # nothing left to run
    assert again.list_summaries(owner="ada").summaries[0].title == "Kept"
    again.close()


def test_erase_and_prune_by_owner_on_the_command_line_upgrade_a_previous_release_file(
        tmp_path: Path) -> None:
    record = '{"type":"human","data":{"content":"x"}}'
    path = previous_release_file(tmp_path / "previous.sqlite3", [("a", record), ("b", record)])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chathistory", *args, "-o", f"path={path}"],
                              capture_output=True, text=True, timeout=300, check=False)

    pruned = run("prune", "--older-than", "1d", "--owner", "ada")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted 0 sessions of owner 'ada'")  # none had owners
    erased = run("erase", "a", "--yes")
    assert erased.stdout == "erased 1 session named (1 message)\n", erased.stderr
    assert [line.split("\t")[0] for line in run("sessions").stdout.splitlines()] == ["b"]


def test_export_of_a_previous_release_database_writes_nothing_to_it(tmp_path: Path) -> None:
    old_write = OLD_WRITE
    path = previous_release_file(tmp_path / "previous.sqlite3",
                                 [("a", '{"type":"human","data":{"content":"x"}}'),
                                  ("b", '{"type":"ai","data":{"content":"y"}}')])
    before = path.read_bytes()
    out = io.StringIO()
    backend = open_backend(path)
    report = export_sessions(backend, out)
    backend.close()
    assert (report.sessions, report.lines, report.summaries) == (2, 2, 2)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"session_id": "a", "summary": {
        "owner": None, "title": None, "metadata": {},
        "created_at": old_write.isoformat(), "updated_at": old_write.isoformat()}}
    assert lines[1] == {"session_id": "a",
                        "record": {"type": "human", "data": {"content": "x"}}}
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous.sqlite3"]


def test_migrations_only_grow(tmp_path: Path) -> None:
    steps = migrations("t")
    assert "created_at" in " ".join(steps[1]) and "owner" in " ".join(steps[1])
    assert steps[0][0].startswith('CREATE TABLE IF NOT EXISTS "t"')
    assert steps[2][-1].endswith("WHERE owner IS NOT NULL")  # ownerless sessions: no entry


def test_one_owners_newest_page_is_an_index_range(sqlite_backend: SqliteBackend) -> None:
    for number in range(30):
        sqlite_backend.append(f"s{number}", numbered_records(1))
        sqlite_backend.update_session(f"s{number}", owner=f"user-{number % 3}")
    plans: list[str] = []
    send = sqlite_backend.driver.send

    def explaining(connection: sqlite3.Connection, request: Any) -> list[Any]:
        if "ORDER BY last_write" in request[0]:
            plans.append(" | ".join(row[3] for row in connection.execute(
                f"EXPLAIN QUERY PLAN {request[0]}", request[1])))
        return send(connection, request)

    sqlite_backend.driver.send = explaining  # type: ignore[method-assign]
    first = sqlite_backend.list_summaries(owner="user-1", limit=4)
    sqlite_backend.list_summaries(owner="user-1", limit=4, cursor=first.cursor)
    sqlite_backend.list_summaries(limit=4, newest_first=False)
    assert all("TEMP B-TREE" not in plan for plan in plans), plans
    assert plans[0] == ("SEARCH message_store_sessions USING INDEX "
                        "message_store_sessions_owner_updated (owner=?)")
    assert plans[1].startswith("SEARCH message_store_sessions USING INDEX "
                               "message_store_sessions_owner_updated (owner=? AND "), plans[1]
    # All sessions, oldest first: the index read in order, stopped after the page.
    assert plans[2] == "SCAN message_store_sessions USING INDEX message_store_sessions_updated"


def test_a_file_sql_chat_message_history_made_lists_exports_and_copies_as_it_is(
        tmp_path: Path) -> None:
    # Its table has no sessions table beside it: `chathistory sessions`, `export` and
    # `copy` said "'chat.sqlite3' has no table 'message_store'", of a file that has one.
    path = tmp_path / "chat.sqlite3"
    record = json.dumps({"type": "human", "data": {"content": "hi"}})
    with sqlite3.connect(path) as connection:  # the layout SQLChatMessageHistory makes
        connection.execute("CREATE TABLE message_store (id INTEGER PRIMARY KEY, "
                           "session_id TEXT NOT NULL, message TEXT NOT NULL)")
        connection.executemany("INSERT INTO message_store (session_id, message) VALUES (?, ?)",
                               [("b", record), ("a", record), ("b", record)])
    connection.close()
    run = [sys.executable, "-m", "chathistory"]
    listed = subprocess.run([*run, "sessions", "-o", f"path={path}"], capture_output=True,
                            text=True, check=False)
    assert (listed.returncode, listed.stdout) == (0, "a\t1\t-\nb\t2\t-\n"), listed.stderr
    exported = subprocess.run([*run, "export", "-o", f"path={path}"], capture_output=True,
                              text=True, check=False)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["session_id"] for line in exported.stdout.splitlines()] == [
        "a", "b", "b"]
    copied = subprocess.run([*run, "copy", "-o", f"path={path}", "--to", "sqlite", "-O",
                             f"path={tmp_path / 'copy.sqlite3'}"], capture_output=True,
                            text=True, check=False)
    assert copied.stdout == "copied 3 messages in 2 sessions (0 already complete)\n", copied.stderr
    newest = subprocess.run([*run, "sessions", "--newest", "-o", f"path={path}"],
                            capture_output=True, text=True, check=False)
    assert newest.returncode == 1
    assert newest.stderr == (
        f"Error: backend 'sqlite': the table 'message_store' in {str(path)!r} has no "
        "session catalog yet (no table 'message_store_sessions', as in a file "
        "langchain_community's SQLChatMessageHistory made); create_collection (any write "
        "through ChatHistory) adds it in place (nothing was created)\n")
    with sqlite3.connect(path) as connection:  # reading created nothing
        assert connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                  ).fetchall() == [("message_store",)]
    connection.close()


def test_a_directory_given_as_the_path_is_named_as_one(tmp_path: Path) -> None:
    # A read said "no database at '...'", a write "unable to open database file".
    hint = (f"{str(tmp_path)!r} is a directory: give the path of a database file in it, "
            f"such as {str(tmp_path / 'chat.sqlite3')!r}")
    backend = open_backend(tmp_path)
    with pytest.raises(CollectionMissingError) as read:
        backend.fetch("s")
    assert str(read.value) == f"backend 'sqlite': {hint} (nothing was created)"
    with pytest.raises(BackendUnavailableError) as write:
        backend.create_collection()  # what the first write through ChatHistory runs
    assert str(write.value) == f"backend 'sqlite' cannot open {str(tmp_path)!r}: {hint}"
    backend.close()
    assert list(tmp_path.iterdir()) == []
