"""The sessions table: counts and write times kept by triggers, upgrades, reads that create nothing.

The capabilities themselves are tested by BackendContract (test_postgres_contract.py),
in both layouts; here is what is particular to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from chathistory_postgres.sql import SCHEMA_VERSION
from langchain_core.messages import AIMessage, HumanMessage
from langchain_postgres import PostgresChatMessageHistory
from psycopg import sql

from chathistory import CollectionMissingError, get_backend
from chathistory.testing import numbered_records


def _relations(admin: psycopg.Connection[Any], schema: str) -> set[str]:
    return {row[0] for row in admin.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s", (schema,))}


def _schema_exists(admin: psycopg.Connection[Any], schema: str) -> bool:
    row = admin.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()
    return bool(row and row[0])


def test_reading_a_missing_schema_creates_nothing(
    postgres_url: str, admin: psycopg.Connection[Any]
) -> None:
    schema = f"chathistory_missing_{uuid.uuid4().hex[:8]}"
    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=schema, table="t")
    try:
        for read in (lambda: backend.fetch("s"), lambda: backend.list_sessions(),
                     lambda: backend.fetch_many(["s"]), lambda: backend.last_write("s"),
                     lambda: backend.fetch("s", limit=2)):
            with pytest.raises(CollectionMissingError, match="nothing was created") as caught:
                read()
            assert "\n" not in str(caught.value)
        with pytest.raises(CollectionMissingError):
            asyncio.run(backend.alist_sessions())
        assert not _schema_exists(admin, schema)
    finally:
        backend.close()
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_reading_a_missing_table_creates_nothing(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_schema: str,
    table_name: str
) -> None:
    before = _relations(admin, postgres_schema)
    for read in (lambda: backend.fetch("s"), lambda: backend.list_sessions(after="a"),
                 lambda: backend.fetch_many(["s", "t"]), lambda: backend.last_write("s")):
        with pytest.raises(CollectionMissingError, match=table_name):
            read()
    with pytest.raises(CollectionMissingError):
        asyncio.run(backend.afetch_many(["s"]))
    assert _relations(admin, postgres_schema) == before


def test_the_cli_reads_create_nothing(postgres_url: str, admin: psycopg.Connection[Any]
                                      ) -> None:
    schema = f"chathistory_missing_{uuid.uuid4().hex[:8]}"
    options = ["-b", "postgres", "-o", f"conninfo={postgres_url}", "-o", f"schema={schema}"]
    for command in (["show", "s"], ["sessions"], ["export"]):
        done = subprocess.run([sys.executable, "-m", "chathistory", *command, *options],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "does not exist" in done.stderr
    assert not _schema_exists(admin, schema)


def test_a_missing_conninfo_reads_option_is_required() -> None:
    done = subprocess.run([sys.executable, "-m", "chathistory", "show", "s", "-b", "postgres"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "backend 'postgres': option 'conninfo' is required" in done.stderr
    assert "Value error" not in done.stderr and "(options)" not in done.stderr


def test_counts_and_times_follow_every_writer(
    backend: PostgresBackend, admin: psycopg.Connection[Any]
) -> None:
    backend.create_collection()
    table = sql.SQL(backend.statements.qualified_table)
    backend.append_many({"a": numbered_records(3), "b": numbered_records(1)})
    # Someone else's SQL on the same table counts too: inserts, deletes, moves, TRUNCATE.
    admin.execute(sql.SQL("INSERT INTO {} (session_id, message) VALUES ('c', '{{}}'), "
                          "('c', '{{}}'), ('a', '{{}}')").format(table))
    assert [(i.session_id, i.messages) for i in backend.list_sessions()] == [
        ("a", 4), ("b", 1), ("c", 2)]
    admin.execute(sql.SQL("DELETE FROM {} WHERE session_id = 'a' AND id IN "
                          "(SELECT min(id) FROM {} WHERE session_id = 'a')").format(table, table))
    admin.execute(sql.SQL("UPDATE {} SET session_id = 'd' WHERE session_id = 'b'").format(table))
    assert [(i.session_id, i.messages) for i in backend.list_sessions()] == [
        ("a", 3), ("c", 2), ("d", 1)]
    assert backend.last_write("b") is None
    admin.execute(sql.SQL("TRUNCATE {}").format(table))
    assert backend.list_sessions() == []


def test_sessions_sort_as_python_sorts_str(backend: PostgresBackend) -> None:
    backend.create_collection()
    ids = ["B", "a", "_x", "Z9", "é", "\u4e2d", "😀", "a b", "A"]
    backend.append_many({session_id: numbered_records(1) for session_id in ids})
    assert [info.session_id for info in backend.list_sessions()] == sorted(ids)
    assert [info.session_id for info in backend.list_sessions(after="Z9", limit=3)] == \
        sorted(ids)[sorted(ids).index("Z9") + 1:][:3]


def test_a_naive_cutoff_is_a_value_error(backend: PostgresBackend) -> None:
    backend.create_collection()
    with pytest.raises(ValueError, match="timezone-aware"):
        backend.delete_sessions_before(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        asyncio.run(backend.adelete_sessions_before(datetime(2030, 1, 1), dry_run=True))


def _make_version_1(admin: psycopg.Connection[Any], backend: PostgresBackend) -> None:
    """Take a created table back to schema version 1: what the previous release made."""
    statements = backend.statements
    table = statements.qualified_table.split(".")[1].strip('"')
    schema = statements.schema
    for event in ("insert", "delete", "update", "truncate"):
        admin.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
            sql.Identifier(f"{table}_count_{event}"), sql.SQL(statements.qualified_table)))
    admin.execute(sql.SQL("DROP FUNCTION {}()").format(
        sql.Identifier(schema, f"{table}_count_rows")))
    admin.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(statements.qualified_sessions)))
    admin.execute(sql.SQL("UPDATE {} SET value = '1' WHERE key = 'schema_version'").format(
        sql.SQL(statements.qualified_meta)))


def test_a_version_1_table_is_upgraded_and_backfilled_from_created_at(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_url: str,
    postgres_schema: str, table_name: str
) -> None:
    backend.create_collection()
    _make_version_1(admin, backend)
    table = sql.SQL(backend.statements.qualified_table)
    old = datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)
    admin.execute(sql.SQL(
        "INSERT INTO {} (session_id, message, created_at) VALUES ('old', '{{}}', %s), "
        "('old', '{{}}', %s), ('new', '{{}}', now())").format(table),
        (old - timedelta(days=1), old))
    fresh = get_backend("postgres", conninfo=postgres_url, schema=postgres_schema,
                        table=table_name)
    # Before the upgrade, a read makes nothing: it counts from the messages themselves.
    assert isinstance(fresh, PostgresBackend)
    assert [(i.session_id, i.messages) for i in fresh.list_sessions()] == [("new", 1), ("old", 2)]
    assert fresh.last_write("old") == old and fresh.last_write("none") is None
    assert asyncio.run(fresh.alast_write("old")) == old
    with pytest.raises(CollectionMissingError, match="_sessions"):
        fresh.delete_sessions_before(old)  # pruning needs the upgrade
    assert f"{table_name}_sessions" not in _relations(admin, postgres_schema)
    fresh.create_collection()
    assert isinstance(fresh, PostgresBackend)
    assert fresh.last_write("old") == old
    assert [(i.session_id, i.messages) for i in fresh.list_sessions()] == [("new", 1), ("old", 2)]
    meta = dict(admin.execute(sql.SQL("SELECT key, value FROM {}").format(
        sql.SQL(backend.statements.qualified_meta))).fetchall())
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert fresh.delete_sessions_before(old + timedelta(seconds=1)) == 1
    assert fresh.fetch("old") == [] and len(fresh.fetch("new")) == 1
    fresh.close()


def test_langchain_postgres_writes_are_counted_and_timed(
    postgres_url: str, postgres_schema: str, table_name: str, admin: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(postgres_url, options=f"-c search_path={postgres_schema}") as theirs:
        PostgresChatMessageHistory.create_tables(theirs, table_name)
        early = str(uuid.uuid4())
        PostgresChatMessageHistory(table_name, early, sync_connection=theirs).add_messages(
            [HumanMessage("before chathistory came")])
        ours = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                            table=table_name, layout="langchain_postgres")
        ours.create_collection()  # adopts their table: backfilled from created_at
        (created,) = admin.execute(sql.SQL("SELECT max(created_at) FROM {}").format(
            sql.Identifier(postgres_schema, table_name))).fetchone() or (None,)
        assert ours.last_write(early) == created
        session = str(uuid.uuid4())
        history = PostgresChatMessageHistory(table_name, session, sync_connection=theirs)
        before = datetime.now(UTC)
        history.add_messages([HumanMessage("hi"), AIMessage("hello")])
        infos = {info.session_id: info for info in ours.list_sessions()}
        assert infos[session].messages == 2 and infos[early].messages == 1
        written = infos[session].last_write
        assert written is not None and written >= before - timedelta(seconds=2)
        assert ours.fetch_many([session.upper()]) == {
            session.upper(): ours.fetch(session)}
        history.clear()
        assert ours.last_write(session) is None
        # Their class still reads and writes the table, triggers and all.
        history.add_messages([HumanMessage("again")])
        assert history.messages == [HumanMessage("again")]
        assert ours.delete_sessions_before(datetime.now(UTC) + timedelta(seconds=5)) == 2
        assert history.messages == []
        ours.close()


def test_a_writer_without_rights_on_the_sessions_table_is_still_counted(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_url: str,
    postgres_schema: str, table_name: str
) -> None:
    # The counting function runs as its owner: a role that may write the message
    # table (as a langchain-postgres app's role may) needs nothing on <table>_sessions.
    backend.create_collection()
    role = f"chathistory_writer_{uuid.uuid4().hex[:6]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(postgres_schema), sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(
            sql.Identifier(postgres_schema, table_name), sql.Identifier(role)))
        url = postgres_url.replace("postgresql://postgres", f"postgresql://{role}", 1)
        with psycopg.connect(url, autocommit=True) as writer:
            writer.execute(sql.SQL("INSERT INTO {} (session_id, message) VALUES "
                                   "('w', '{{}}'), ('w', '{{}}')").format(
                sql.Identifier(postgres_schema, table_name)))
            writer.execute(sql.SQL("DELETE FROM {} WHERE id = (SELECT min(id) FROM {})").format(
                sql.Identifier(postgres_schema, table_name),
                sql.Identifier(postgres_schema, table_name)))
        assert [(i.session_id, i.messages) for i in backend.list_sessions()] == [("w", 1)]
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
