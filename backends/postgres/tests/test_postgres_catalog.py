"""The session catalog on PostgreSQL, beyond the contract: kept in the writer's own
transaction by the triggers (langchain-postgres's writes included), and listed as an
index range."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from langchain_core.messages import AIMessage, HumanMessage
from langchain_postgres import PostgresChatMessageHistory
from psycopg import sql

from chathistory import erase, get_backend, list_conversations
from chathistory.catalog import ErasureReceipt
from chathistory.testing import numbered_records
from chathistory.testing.catalog_contract import CatalogContract


class RolledBack(Exception):
    pass


def test_langchain_postgres_writes_move_the_catalog(
    postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    ours = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                        table=table_name, layout="langchain_postgres")
    ours.create_collection()
    session = str(uuid.uuid4())
    described = ours.update_session(session, owner="ada", title="Trip")
    with psycopg.connect(postgres_url, options=f"-c search_path={postgres_schema}") as theirs:
        history = PostgresChatMessageHistory(table_name, session, sync_connection=theirs)
        history.add_messages([HumanMessage("hi"), AIMessage("hello")])
        (summary,) = list_conversations(ours, owner="ada").summaries
        assert (summary.session_id, summary.title, summary.messages) == (session, "Trip", 2)
        assert summary.created_at == described.created_at
        assert summary.updated_at > described.updated_at
        history.clear()  # their clear: the summary goes with the last message
        assert ours.session_summaries([session]) == {}
        assert list_conversations(ours, owner="ada").summaries == []
    ours.close()


def test_a_session_titled_before_its_first_message_has_no_last_write(
        backend: PostgresBackend) -> None:
    """last_write reads the session's summary, which a title alone creates: until a message
    is appended there is no write time (sync and async), then it is the summary's."""
    backend.create_collection()
    backend.update_session("titled-first", title="Trip")
    assert backend.last_write("titled-first") is None
    assert asyncio.run(backend.alast_write("titled-first")) is None  # type: ignore[attr-defined]
    backend.append("titled-first", numbered_records(1))
    summary = backend.session_summaries(["titled-first"])["titled-first"]
    assert backend.last_write("titled-first") == summary.updated_at


def test_an_append_rolled_back_with_the_apps_transaction_leaves_the_catalog_as_it_was(
    postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    with psycopg.connect(postgres_url) as connection:
        backend = get_backend("postgres", connection=connection, schema=postgres_schema,
                              table=table_name)
        backend.create_collection()
        catalog: Any = backend
        backend.append("s", numbered_records(1))
        before = catalog.session_summaries(["s"])
        with pytest.raises(RolledBack), connection.transaction():
            backend.append("s", numbered_records(2))
            backend.append("t", numbered_records(1))
            assert catalog.session_summaries(["s"])["s"].messages == 3  # in the transaction
            raise RolledBack
        assert catalog.session_summaries(["s", "t"]) == before
        with connection.transaction():
            backend.append("s", numbered_records(2))
        assert catalog.session_summaries(["s"])["s"].messages == 3
        backend.close()


def _plan(admin: psycopg.Connection[Any], statement: str, parameters: tuple[Any, ...]) -> str:
    (plan,), = admin.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters).fetchall()
    return json.dumps(plan)


def test_one_owners_newest_page_is_a_range_of_the_owner_index(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_schema: str,
    table_name: str
) -> None:
    backend.create_collection()
    sessions = sql.Identifier(postgres_schema, f"{table_name}_sessions")
    # 20,000 sessions of 200 owners, as the triggers and update_session leave them.
    admin.execute(sql.SQL(
        "INSERT INTO {} (session_id, messages, last_write, owner, metadata) "
        "SELECT 's' || n, 1, now() - n * interval '1 second', 'owner-' || (n % 200), "
        "jsonb_build_object('plan', CASE WHEN n % 2 = 0 THEN 'pro' ELSE 'free' END) "
        "FROM generate_series(1, 20000) AS n").format(sessions))
    admin.execute(sql.SQL("ANALYZE {}").format(sessions))
    statements = backend.statements
    owner_index, updated_index = f"{table_name}_owner_updated_idx", f"{table_name}_updated_idx"
    at = datetime.now(UTC) - timedelta(hours=1)

    first = statements.listing(owner=True, where=False, after=False, newest_first=True)
    later = statements.listing(owner=True, where=False, after=True, newest_first=True)
    oldest = statements.listing(owner=True, where=True, after=True, newest_first=False)
    everyone = statements.listing(owner=False, where=False, after=True, newest_first=True)
    for statement, parameters, index in (
            (first, ("owner-7", 21), owner_index),
            (later, ("owner-7", at, "s407", 21), owner_index),
            (everyone, (at, "s407", 21), updated_index)):
        plan = _plan(admin, statement, parameters)
        assert index in plan and '"Sort"' not in plan, plan
    # Oldest first with a filter: the owner's range after the cursor (the planner may
    # sort the few rows it holds), never the table.
    plan = _plan(admin, oldest, ("owner-7", '{"plan": "free"}', at, "s407", 21))
    assert owner_index in plan and "Seq Scan" not in plan, plan
    # The cursor's row comparison is the scan's bound, not a filter over the owner's rows.
    assert '"Index Cond": "((owner = ' in _plan(admin, later, ("owner-7", at, "s407", 21))
    assert "ROW(last_write, session_id) <" in _plan(admin, later, ("owner-7", at, "s407", 21))


ERASER = """
import sys, time
from chathistory import erase, get_backend

backend = get_backend("postgres", conninfo=sys.argv[1], schema=sys.argv[2], table=sys.argv[3])

def stall(done):
    print("chunk", done.sessions, flush=True)
    time.sleep(60)  # killed here, between two chunks

erase(backend, owner="ada", chunk=2, progress=stall)
"""


def test_an_erasure_killed_between_chunks_leaves_whole_sessions_and_finishes_when_rerun(
    backend: PostgresBackend, postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    backend.create_collection()
    ada = [f"ada-{number}" for number in range(5)]
    for session_id in [*ada, "bob"]:
        backend.append(session_id, numbered_records(3))
        backend.update_session(session_id, owner="bob" if session_id == "bob" else "ada")
    eraser = subprocess.Popen([sys.executable, "-c", ERASER, postgres_url, postgres_schema,
                               table_name], stdout=subprocess.PIPE, text=True)
    try:
        assert eraser.stdout is not None and eraser.stdout.readline() == "chunk 2\n"
    finally:
        eraser.kill()
        eraser.wait()
    left = list_conversations(backend, owner="ada", limit=100).summaries
    assert len(left) == 3 and {summary.messages for summary in left} == {3}
    assert all(len(backend.fetch(summary.session_id)) == 3 for summary in left)
    rest = erase(backend, owner="ada")
    assert (rest.sessions, rest.messages) == (3, 9)
    assert all(backend.fetch(session_id) == [] for session_id in ada)
    assert erase(backend, owner="ada") == ErasureReceipt(0, 0)
    assert len(backend.fetch("bob")) == 3
    assert backend.session_summaries(["bob"])["bob"].owner == "bob"


# -- broken catalogs fail the contract ------------------------------------------------------

CONTRACT = CatalogContract()


def _leave_the_summary_on_clear(backend: PostgresBackend, url: str) -> None:
    s = backend.statements
    s.delete = (f"WITH unused AS (SELECT %s::text) DELETE FROM {s.qualified_table} "
                "WHERE session_id = %s::text")


def _drop_the_ties_after_a_cursor(backend: PostgresBackend, url: str) -> None:
    listing = backend.statements.listing

    def without_ties(**shape: bool) -> str:
        return listing(**shape).replace("(last_write, session_id) < (%s::timestamptz, %s::text)",
                                        "last_write < %s::timestamptz AND %s::text IS NOT NULL")

    vars(backend.statements)["listing"] = without_ties


def _count_no_inserts(backend: PostgresBackend, url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
            sql.Identifier(f"{backend.config.table}_count_insert"),
            sql.SQL(backend.statements.qualified_table)))


def _erase_only_the_messages(backend: PostgresBackend, url: str) -> None:
    s = backend.statements
    s.erase = (f"WITH gone AS (DELETE FROM {s.qualified_table} WHERE session_id = "
               "ANY(%s::text[]) RETURNING session_id) SELECT count(DISTINCT session_id), "
               "count(*) FROM gone WHERE %s::text[] IS NOT NULL")


@pytest.mark.parametrize(("breaks", "test"), [
    (_leave_the_summary_on_clear,
     CONTRACT.test_catalog_describes_a_session_before_its_first_message),
    (_drop_the_ties_after_a_cursor,
     CONTRACT.test_catalog_cursor_pages_have_no_duplicates_and_no_gaps),
    (_count_no_inserts, CONTRACT.test_catalog_counts_and_times_follow_append_and_clear),
    (_erase_only_the_messages, CONTRACT.test_catalog_erase_sessions_by_id_with_a_dry_run_first),
], ids=lambda value: getattr(value, "__name__", ""))
def test_a_broken_catalog_fails_the_contract(
        postgres_url: str, postgres_schema: str, table_name: str,
        breaks: Callable[[PostgresBackend, str], None],
        test: Callable[[Any, Callable[[str], str]], None]) -> None:
    for table, broken in ((f"{table_name}_broken", True), (table_name, False)):
        backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                               table=table)
        backend.create_collection()
        try:
            if broken:
                breaks(backend, postgres_url)
                with pytest.raises(AssertionError):
                    test(backend, lambda name: name)
            else:  # the same test passes on the backend as it is
                test(backend, lambda name: name)
        finally:
            backend.close()
