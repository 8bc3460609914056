"""The table: its layout and version, the index reads use, what jsonb can hold, privileges."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from chathistory_postgres.sql import SCHEMA_VERSION
from langchain_core.messages import HumanMessage, message_to_dict
from psycopg import sql
from psycopg.conninfo import make_conninfo

from chathistory import (
    ChatHistoryError,
    ConfigError,
    PermissionDeniedError,
    RecordError,
    get_backend,
)
from chathistory.testing import numbered_records


def _table(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def test_the_layout_and_its_version(backend: PostgresBackend, admin: psycopg.Connection[Any],
                                    postgres_schema: str, table_name: str) -> None:
    backend.create_collection()
    columns = dict(admin.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s", (postgres_schema, table_name)).fetchall())
    assert columns == {"id": "bigint", "session_id": "text", "message": "json",
                       "created_at": "timestamp with time zone"}
    meta = dict(admin.execute(sql.SQL("SELECT key, value FROM {}").format(
        _table(postgres_schema, f"{table_name}_meta"))).fetchall())
    assert meta == {"schema_version": str(SCHEMA_VERSION), "layout": "chathistory"}
    indexes = [row[0] for row in admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        (postgres_schema, table_name))]
    assert any("(session_id, id)" in index for index in indexes), indexes


def test_a_newer_schema_version_is_refused(backend: PostgresBackend,
                                           admin: psycopg.Connection[Any], postgres_url: str,
                                           postgres_schema: str, table_name: str) -> None:
    backend.create_collection()
    newer = SCHEMA_VERSION + 1
    admin.execute(sql.SQL("UPDATE {} SET value = %s WHERE key = 'schema_version'").format(
        _table(postgres_schema, f"{table_name}_meta")), (str(newer),))
    other = get_backend("postgres", conninfo=postgres_url,
                        schema=postgres_schema, table=table_name)
    with pytest.raises(ChatHistoryError, match=rf"schema version {newer}.*upgrade"):
        other.create_collection()
    other.close()


def test_a_foreign_table_of_the_same_name_is_refused(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_schema: str,
    table_name: str
) -> None:
    admin.execute(sql.SQL("CREATE TABLE {} (id int, session_id text, message text)").format(
        _table(postgres_schema, table_name)))
    with pytest.raises(ConfigError, match="column 'message' is text, expected json or jsonb"):
        backend.create_collection()


def test_an_equivalent_table_made_by_hand_is_adopted(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_schema: str,
    table_name: str
) -> None:
    admin.execute(sql.SQL(
        "CREATE TABLE {} (id bigserial PRIMARY KEY, session_id text NOT NULL, "
        "message jsonb NOT NULL)").format(_table(postgres_schema, table_name)))
    backend.create_collection()
    backend.append("s", numbered_records(2))
    assert len(backend.fetch("s")) == 2


def test_the_newest_n_come_from_an_index_scan(backend: PostgresBackend,
                                              admin: psycopg.Connection[Any]) -> None:
    backend.create_collection()
    table = sql.SQL(backend.statements.qualified_table)
    backend.append("long", numbered_records(3000))
    admin.execute(sql.SQL(
        "INSERT INTO {} (session_id, message) SELECT 'other-' || (n % 500), "
        "'{{\"type\": \"human\", \"data\": {{\"content\": \"x\"}}}}' "
        "FROM generate_series(1, 50000) AS n").format(table))
    admin.execute(sql.SQL("ANALYZE {}").format(table))
    query = backend.statements.select_newest.replace("%s::text", "'long'").replace("%s", "20")
    plan = "\n".join(row[0] for row in admin.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query))
    assert "Index Scan Backward" in plan, plan
    assert "_sid_id_idx" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "rows=20 loops=1" in plan, plan


def test_jsonb_numbers_come_back_exactly(backend: PostgresBackend) -> None:
    backend.create_collection()
    record = {"type": "ai", "data": {
        "huge_float": 1e300, "integral_float": 1e16, "negative": -2.5e200, "tiny": 5e-324,
        "big_int": 10**40, "ints": [0, -1, 2**63], "fraction": 0.1,
        "text": "1e+300 stays a string",
    }}
    backend.append("numbers", [record])
    (stored,) = backend.fetch("numbers")
    assert stored == record
    assert type(stored["data"]["integral_float"]) is float
    assert type(stored["data"]["big_int"]) is int


def test_a_record_holding_nul_is_kept_as_its_json_text(
    backend: PostgresBackend, admin: psycopg.Connection[Any]
) -> None:
    # jsonb has no NUL in a string: such a record is a JSON string of its JSON text (in a
    # json column too, so that a table of either kind holds the same).
    backend.create_collection()
    plain = message_to_dict(HumanMessage("no nul, a literal \\u0000 and 1e+300 text"))
    nul = {"type": "human", "data": {"content": "a\x00b", "big": 1e300, "n": 10**40}}
    backend.append("s", [plain, nul])
    stored = [row[0] for row in admin.execute(sql.SQL(
        "SELECT json_typeof(message::json) FROM {} ORDER BY id").format(
            sql.SQL(backend.statements.qualified_table)))]
    assert stored == ["object", "string"]
    assert backend.fetch("s") == [plain, nul]
    assert asyncio.run(backend.afetch("s", limit=1)) == [nul]


def test_a_lone_surrogate_is_a_record_error_with_nothing_written(
    backend: PostgresBackend
) -> None:
    backend.create_collection()
    batch = [*numbered_records(1), message_to_dict(HumanMessage("lone \ud800 surrogate"))]
    with pytest.raises(RecordError):
        backend.append("s", batch)
    with pytest.raises(RecordError):
        asyncio.run(backend.aappend("s", batch))
    assert backend.fetch("s") == []


@pytest.fixture
def reader_role(admin: psycopg.Connection[Any], postgres_schema: str) -> Iterator[str]:
    role = f"chathistory_reader_{secrets.token_hex(3)}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
        sql.Identifier(postgres_schema), sql.Identifier(role)))
    yield role
    admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_missing_privilege_is_permission_denied(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_url: str,
    postgres_schema: str, table_name: str, reader_role: str
) -> None:
    backend.create_collection()
    backend.append("s", numbered_records(2))
    admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
        _table(postgres_schema, table_name), sql.Identifier(reader_role)))
    admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
        _table(postgres_schema, f"{table_name}_meta"), sql.Identifier(reader_role)))
    url = postgres_url.replace("postgresql://postgres", f"postgresql://{reader_role}", 1)
    reader = get_backend("postgres", conninfo=url, schema=postgres_schema, table=table_name)
    reader.create_collection()  # everything exists: it only reads, no DDL
    assert len(reader.fetch("s")) == 2
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        reader.append("s", numbered_records(1))
    with pytest.raises(PermissionDeniedError):
        asyncio.run(reader.aclear("s"))
    reader.close()
    assert len(backend.fetch("s")) == 2


def test_own_connections_are_named_and_take_the_commit_setting(
    postgres_url: str, postgres_schema: str, table_name: str, admin: psycopg.Connection[Any]
) -> None:
    backend = get_backend("postgres", conninfo=postgres_url, schema=postgres_schema,
                          table=table_name, synchronous_commit="off")
    backend.create_collection()
    assert isinstance(backend, PostgresBackend)
    with backend.driver.connection(backend.runner.call("look")) as connection:
        assert connection.execute("SHOW synchronous_commit").fetchone() == ("off",)
        assert connection.autocommit
    names = {row[0] for row in admin.execute(
        "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")}
    assert "chathistory-postgres" in names
    backend.close()


def test_an_application_name_given_is_kept(
    postgres_url: str, postgres_schema: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chathistory-postgres is libpq's fallback: the conninfo's name, or PGAPPNAME, wins."""
    named = make_conninfo(postgres_url, application_name="the-app")
    for conninfo, expected in [(named, "the-app"), (postgres_url, "from-environment")]:
        monkeypatch.setenv("PGAPPNAME", "from-environment")
        backend = get_backend("postgres", conninfo=conninfo, schema=postgres_schema,
                              table=table_name)
        with backend.driver.connection(backend.runner.call("look")) as connection:
            assert connection.execute("SHOW application_name").fetchone() == (expected,)
        backend.close()


def test_close_then_use_opens_a_new_pool(backend: PostgresBackend) -> None:
    backend.create_collection()
    backend.append("s", numbered_records(1))
    backend.close()
    backend.close()
    backend.append("s", numbered_records(1, prefix="after"))
    assert [r["data"]["content"] for r in backend.fetch("s")] == ["m0", "after0"]


def test_a_stored_value_that_is_no_record_is_a_record_error(
    backend: PostgresBackend, admin: psycopg.Connection[Any]
) -> None:
    backend.create_collection()
    backend.append("s", numbered_records(1))
    admin.execute(sql.SQL("INSERT INTO {} (session_id, message) VALUES ('s', '[1, 2]')").format(
        sql.SQL(backend.statements.qualified_table)))
    with pytest.raises(RecordError, match="JSON list, not an object"):
        backend.fetch("s")
    with pytest.raises(RecordError, match="JSON list, not an object"):
        asyncio.run(backend.afetch("s", limit=1))
    assert backend.fetch("s", limit=0) == []
