"""Migrations into PostgreSQL, end to end on the real server, as a user runs them.

sqlite -> postgres through the CLI (a subprocess) and through copy_sessions, and a
table written by langchain-postgres's own PostgresChatMessageHistory -> the
chathistory layout through the CLI. Each uses a schema of its own, dropped after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from langchain_core.messages import message_to_dict
from langchain_postgres import PostgresChatMessageHistory
from psycopg import sql

from chathistory import get_backend
from chathistory.backends.sqlite import SqliteBackend
from chathistory.testing import numbered_records, sample_messages
from chathistory.transfer import copy_sessions


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema of this test alone, not created here (the copy creates it), dropped after."""
    name = f"chathistory_migrate_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _records() -> list[dict[str, Any]]:
    return [message_to_dict(message) for message in sample_messages()]


def _cli(*arguments: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "chathistory", *arguments],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Iterator[tuple[str, dict[str, list[dict[str, Any]]]]]:
    path = str(tmp_path / "chat.sqlite3")
    source = SqliteBackend(SqliteBackend.Config(path=path))
    source.create_collection()
    sessions = {f"user-{number}": _records() + numbered_records(number, prefix=f"u{number}-")
                for number in range(25)}
    sessions["ünïcode id ✓"] = _records()
    source.append_many(sessions)
    yield path, sessions
    source.close()


def test_sqlite_to_postgres_with_the_cli(
    sqlite_source: tuple[str, dict[str, list[dict[str, Any]]]], postgres_url: str, schema: str
) -> None:
    path, sessions = sqlite_source
    command = ["copy", "-o", f"path={path}", "--to", "postgres", "-O",
               f"conninfo={postgres_url}", "-O", f"schema={schema}", "--json"]
    first = _cli(*command)
    assert first["messages_written"] == sum(len(records) for records in sessions.values())
    assert first["mismatched"] == []
    target = PostgresBackend.from_options(conninfo=postgres_url, schema=schema)
    assert target.fetch_many(list(sessions)) == sessions
    assert {info.session_id: info.messages for info in target.list_sessions(limit=1000)} == {
        session_id: len(records) for session_id, records in sessions.items()}
    again = _cli(*command)
    assert again["messages_written"] == 0 and again["already_complete"] == len(sessions)
    assert target.fetch_many(list(sessions)) == sessions
    target.close()


def test_sqlite_to_postgres_with_copy_sessions(
    sqlite_source: tuple[str, dict[str, list[dict[str, Any]]]], postgres_url: str, schema: str
) -> None:
    path, sessions = sqlite_source
    source = get_backend("sqlite", path=path)
    target = get_backend("postgres", conninfo=postgres_url, schema=schema)
    report = copy_sessions(source, target, chunk=7)
    assert report.messages == sum(len(records) for records in sessions.values())
    assert isinstance(target, PostgresBackend)
    assert target.fetch_many(list(sessions)) == sessions
    for session_id, records in sessions.items():
        assert target.fetch(session_id) == records
    again = copy_sessions(source, target)
    assert again.messages == 0 and again.complete == len(sessions) and not again.mismatched
    source.close()
    target.close()


def test_langchain_postgres_table_to_the_chathistory_layout_with_the_cli(
    postgres_url: str, schema: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    written: dict[str, list[dict[str, Any]]] = {}
    with psycopg.connect(postgres_url, options=f"-c search_path={schema}") as theirs:
        PostgresChatMessageHistory.create_tables(theirs, "chat_history")
        for number in range(12):
            session = str(uuid.uuid4())
            history = PostgresChatMessageHistory("chat_history", session, sync_connection=theirs)
            messages = sample_messages()[:3 + number % 5]
            history.add_messages(messages)
            written[session] = [message_to_dict(message) for message in messages]
    source = ["-b", "postgres", "-o", f"conninfo={postgres_url}", "-o", f"schema={schema}",
              "-o", "layout=langchain_postgres", "-o", "table=chat_history"]
    target = ["--to", "postgres", "-O", f"conninfo={postgres_url}", "-O", f"schema={schema}"]
    first = _cli("copy", *source, *target, "--json")
    assert first["messages_written"] == sum(len(records) for records in written.values())
    ours = PostgresBackend.from_options(conninfo=postgres_url, schema=schema)
    assert ours.fetch_many(list(written)) == written
    assert _cli("copy", *source, *target, "--json")["messages_written"] == 0
    # Their class still reads its table, which the copy only read.
    with psycopg.connect(postgres_url, options=f"-c search_path={schema}") as theirs:
        for session, records in written.items():
            history = PostgresChatMessageHistory("chat_history", session, sync_connection=theirs)
            assert [message_to_dict(message) for message in history.messages] == records
    ours.close()
