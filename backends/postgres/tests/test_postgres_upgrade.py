"""Tables made by earlier releases upgrade in place, and a new step is all a new column takes.

The earlier layouts are built here with the statements those releases ran
(schema version 1: the message table, its index and ``<table>_meta``; version
2 adds ``<table>_sessions`` and its triggers), in both layouts, then opened
with this release.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from chathistory_postgres import sql as backend_sql
from psycopg import sql

from chathistory.testing import numbered_records

TABLES = {
    "chathistory": [
        "CREATE TABLE IF NOT EXISTS {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "session_id text NOT NULL, message jsonb NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT now())",
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (session_id, id)",
    ],
    "langchain_postgres": [
        "CREATE TABLE IF NOT EXISTS {table} (id SERIAL PRIMARY KEY, session_id UUID NOT NULL, "
        "message JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT NOW())",
        "CREATE INDEX IF NOT EXISTS {their_index} ON {table} (session_id)",
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (session_id, id)",
    ],
}
META = ["CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)",
        "INSERT INTO {meta} (key, value) VALUES ('schema_version', {version}), "
        "('layout', {layout})"]
# Version 2 as the previous release made it: its function's body was a quoted string.
COUNT_ROWS = (
    "BEGIN IF TG_OP = 'TRUNCATE' THEN DELETE FROM {sessions}; RETURN NULL; END IF; "
    "IF TG_OP <> 'INSERT' THEN UPDATE {sessions} AS s SET messages = s.messages - d.n "
    "FROM (SELECT o.session_id{to_c} AS session_id, count(*) AS n FROM old_rows AS o "
    "GROUP BY 1) AS d WHERE s.session_id = d.session_id; DELETE FROM {sessions} AS s "
    "WHERE s.messages <= 0 AND s.session_id IN (SELECT o.session_id{to_c} FROM old_rows AS o); "
    "END IF; IF TG_OP <> 'DELETE' THEN INSERT INTO {sessions} AS s "
    "(session_id, messages, last_write) SELECT n.session_id{to_c}, count(*), now() "
    "FROM new_rows AS n GROUP BY 1 ORDER BY 1 ON CONFLICT (session_id) DO UPDATE SET "
    "messages = s.messages + excluded.messages, "
    "last_write = greatest(s.last_write, excluded.last_write); END IF; RETURN NULL; END")
SESSIONS = [
    "CREATE TABLE IF NOT EXISTS {sessions} (session_id {session_type} PRIMARY KEY, "
    "messages bigint NOT NULL, last_write timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {last_write_index} ON {sessions} (last_write)",
    "CREATE OR REPLACE FUNCTION {count_rows}() RETURNS trigger LANGUAGE plpgsql "
    "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}",
    "CREATE TRIGGER {count_insert} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
    "CREATE TRIGGER {count_delete} AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
    "CREATE TRIGGER {count_update} AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
    "CREATE TRIGGER {count_truncate} AFTER TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION {count_rows}()",
]


def _names(schema: str, table: str, layout: str, version: int) -> dict[str, sql.Composable]:
    uuids = layout == "langchain_postgres"
    names: dict[str, sql.Composable] = {
        "table": sql.Identifier(schema, table), "meta": sql.Identifier(schema, f"{table}_meta"),
        "sessions": sql.Identifier(schema, f"{table}_sessions"),
        "index": sql.Identifier(f"{table}_sid_id_idx"),
        "their_index": sql.Identifier(f"idx_{table}_session_id"),
        "last_write_index": sql.Identifier(f"{table}_last_write_idx"),
        "count_rows": sql.Identifier(schema, f"{table}_count_rows"),
        "session_type": sql.SQL("uuid" if uuids else 'text COLLATE "C"'),
        "to_c": sql.SQL("" if uuids else ' COLLATE "C"'),
        "version": sql.Literal(str(version)), "layout": sql.Literal(layout),
    }
    names.update({f"count_{event}": sql.Identifier(f"{table}_count_{event}")
                  for event in ("insert", "delete", "update", "truncate")})
    names["body"] = sql.Literal(sql.SQL(COUNT_ROWS).format(**names).as_string())
    return names


def _build_earlier_release(admin: psycopg.Connection[Any], schema: str, table: str,
                           layout: str, version: int) -> None:
    names = _names(schema, table, layout, version)
    for statement in TABLES[layout] + META + (SESSIONS if version >= 2 else []):
        admin.execute(sql.SQL(statement).format(**names))


def _session(layout: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name)) if layout == "langchain_postgres" else name


def _contents(records: list[dict[str, Any]]) -> list[str]:
    return [record["data"]["content"] for record in records]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("layout", ["chathistory", "langchain_postgres"])
def test_a_table_of_an_earlier_release_upgrades_in_place(
    layout: str, version: int, postgres_url: str, postgres_schema: str, table_name: str,
    admin: psycopg.Connection[Any]
) -> None:
    _build_earlier_release(admin, postgres_schema, table_name, layout, version)
    names = _names(postgres_schema, table_name, layout, version)
    first, second = _session(layout, "first"), _session(layout, "second")
    written = datetime(2022, 3, 4, 5, 6, 7, tzinfo=UTC)
    for session, records, at in ((first, numbered_records(2), written - timedelta(days=1)),
                                 (second, numbered_records(1, prefix="x"), written)):
        for record in records:
            admin.execute(sql.SQL(
                "INSERT INTO {table} (session_id, message, created_at) VALUES (%s, %s, %s)"
            ).format(**names), (session, psycopg.types.json.Jsonb(record), at))

    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name, layout=layout)
    backend.create_collection()
    assert _contents(backend.fetch(first)) == ["m0", "m1"]
    assert _contents(asyncio.run(backend.afetch(second))) == ["x0"]
    backend.append(first, numbered_records(1, prefix="new"))
    assert _contents(backend.fetch(first, limit=2)) == ["m1", "new0"]
    counts = {info.session_id: info.messages for info in backend.list_sessions()}
    assert counts == {first: 3, second: 1}
    if version == 1:  # backfilled from the messages: the newest created_at
        assert backend.last_write(second) == written
    meta = dict(admin.execute(sql.SQL("SELECT key, value FROM {meta}").format(**names)))
    assert meta == {"schema_version": str(backend_sql.SCHEMA_VERSION), "layout": layout}
    triggers = admin.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s)",
                             (backend.statements.qualified_table,)).fetchone()
    assert triggers == (4,)
    assert backend.delete_sessions_before(written - timedelta(hours=1)) == 0
    # The catalog (step 3): created_at from each session's first message, then kept.
    summaries = backend.session_summaries([first, second])
    assert {session: summary.created_at for session, summary in summaries.items()} == {
        first: written - timedelta(days=1), second: written}
    assert (summaries[first].owner, summaries[first].title, summaries[first].metadata) == (
        None, None, {})
    backend.update_session(second, owner="ada", metadata={"plan": "pro"})
    page = backend.list_summaries(owner="ada", where={"plan": "pro"})
    assert [summary.session_id for summary in page.summaries] == [second]
    indexes = {name for (name,) in admin.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        (postgres_schema, f"{table_name}_sessions"))}
    assert indexes == {f"{table_name}_sessions_pkey", f"{table_name}_updated_idx",
                       f"{table_name}_owner_updated_idx"}
    backend.close()


def test_a_new_column_is_one_new_step(
    postgres_url: str, postgres_schema: str, table_name: str, admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    current = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name)
    current.create_collection()
    current.append("s", numbered_records(1))
    current.close()
    step = ("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS note text",)
    monkeypatch.setattr(backend_sql, "MIGRATIONS", [*backend_sql.MIGRATIONS, step])
    monkeypatch.setattr(backend_sql, "SCHEMA_VERSION", len(backend_sql.MIGRATIONS) - 1)

    for table in (table_name, f"{table_name}_new"):  # upgraded, and made from nothing
        later = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                             table=table)
        later.create_collection()
        later.append("s", numbered_records(1, prefix="later"))
        column = admin.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'note'",
            (later.statements.qualified_table,)).fetchone()
        assert column == (1,)
        version = admin.execute(sql.SQL(
            "SELECT value FROM {} WHERE key = 'schema_version'").format(
                sql.SQL(later.statements.qualified_meta))).fetchone()
        assert version == (str(backend_sql.SCHEMA_VERSION),)
        assert _contents(later.fetch("s"))[-1] == "later0"
        later.close()


@pytest.mark.parametrize("holding", [False, True], ids=["empty", "holding-messages"])
def test_our_layout_stores_json_text_and_a_table_holding_messages_keeps_jsonb(
    holding: bool, postgres_url: str, postgres_schema: str, table_name: str,
    admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def open_backend() -> PostgresBackend:
        backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                               table=table_name)
        backend.create_collection()
        return backend

    with monkeypatch.context() as release_3:  # the layout before step 4: jsonb
        release_3.setattr(backend_sql, "MIGRATIONS", backend_sql.MIGRATIONS[:4])
        release_3.setattr(backend_sql, "SCHEMA_VERSION", 3)
        earlier = open_backend()
        if holding:
            earlier.append("s", numbered_records(2))
        earlier.close()
    backend = open_backend()
    kind = admin.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = 'message'",
        (backend.statements.qualified_table,)).fetchone()
    assert kind == (("jsonb",) if holding else ("json",))
    awkward = {"type": "ai", "data": {"content": "a\x00b", "huge": 1e300, "n": 10**40}}
    backend.append("s", [awkward, *numbered_records(1, prefix="new")])
    asyncio.run(backend.aappend("s", numbered_records(1, prefix="async")))
    stored = backend.fetch("s")
    assert stored[-3] == awkward
    assert _contents(stored[-2:]) == ["new0", "async0"]
    assert len(stored) == (5 if holding else 3)
    backend.close()
