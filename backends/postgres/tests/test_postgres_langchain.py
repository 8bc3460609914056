"""In place on a langchain-postgres table, in both directions, with the real package."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from langchain_core.messages import AIMessage, HumanMessage
from langchain_postgres import PostgresChatMessageHistory
from psycopg import sql

from chathistory import ChatHistory, ConfigError, history_factory
from chathistory.testing import HOSTILE_SESSION_IDS, numbered_records, sample_messages


@pytest.fixture
def theirs(postgres_url: str, postgres_schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as a langchain-postgres user has one: its table lands in our schema."""
    with psycopg.connect(postgres_url, options=f"-c search_path={postgres_schema}") as connection:
        yield connection


@pytest.fixture
def ours(postgres_url: str, postgres_schema: str, table_name: str
         ) -> Iterator[PostgresBackend]:
    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name, layout="langchain_postgres")
    yield backend
    backend.close()


def test_we_read_and_append_to_what_they_wrote(
    theirs: psycopg.Connection[Any], ours: PostgresBackend, table_name: str
) -> None:
    PostgresChatMessageHistory.create_tables(theirs, table_name)
    session = str(uuid.uuid4())
    their_history = PostgresChatMessageHistory(table_name, session, sync_connection=theirs)
    messages = sample_messages()
    their_history.add_messages(messages)

    history = ChatHistory(session, backend=ours)
    assert history.messages == messages
    assert history.get_messages(limit=2) == messages[-2:]
    history.add_messages([HumanMessage("and now through chathistory"), AIMessage("ok")])

    expected = [*messages, HumanMessage("and now through chathistory"), AIMessage("ok")]
    assert their_history.messages == expected
    assert asyncio.run(history.aget_messages()) == expected
    their_history.add_messages([HumanMessage("theirs again")])
    assert history.get_messages(limit=1) == [HumanMessage("theirs again")]


def test_they_read_what_we_wrote(
    theirs: psycopg.Connection[Any], ours: PostgresBackend, table_name: str,
    postgres_schema: str
) -> None:
    session = str(uuid.uuid4())
    history = ChatHistory(session, backend=ours)  # creates the table, as they would
    messages = sample_messages()
    history.add_messages(messages[:3])
    asyncio.run(history.aadd_messages(messages[3:]))
    ChatHistory(str(uuid.uuid4()), backend=ours).add_messages([HumanMessage("other session")])

    their_history = PostgresChatMessageHistory(table_name, session, sync_connection=theirs)
    assert their_history.messages == messages
    their_history.clear()
    assert history.messages == []
    # Their own table creation is happy with ours, and their index is there.
    PostgresChatMessageHistory.create_tables(theirs, table_name)
    indexes = {row[0] for row in theirs.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        (postgres_schema, table_name))}
    assert {f"idx_{table_name}_session_id", f"{table_name}_sid_id_idx"} <= indexes


def test_async_connection_of_theirs_and_async_ours(
    postgres_url: str, postgres_schema: str, ours: PostgresBackend, table_name: str
) -> None:
    session = str(uuid.uuid4())

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(
                postgres_url, options=f"-c search_path={postgres_schema}") as connection:
            await PostgresChatMessageHistory.acreate_tables(connection, table_name)
            their_history = PostgresChatMessageHistory(table_name, session,
                                                       async_connection=connection)
            await their_history.aadd_messages([HumanMessage("q1"), AIMessage("a1")])
            history = ChatHistory(session, backend=ours)
            assert await history.aget_messages() == [HumanMessage("q1"), AIMessage("a1")]
            await history.aadd_messages([HumanMessage("q2")])
            assert [m.content for m in await their_history.aget_messages()] == ["q1", "a1", "q2"]
        await ours.aclose()

    asyncio.run(scenario())


def test_uuid_spellings_are_one_session(ours: PostgresBackend) -> None:
    ours.create_collection()
    session = uuid.uuid4()
    ours.append(str(session).upper(), numbered_records(1))
    ours.append("{" + session.hex + "}", numbered_records(1, prefix="n"))
    assert [r["data"]["content"] for r in ours.fetch(str(session))] == ["m0", "n0"]


@pytest.mark.parametrize("session_id", ["user-42", "", *HOSTILE_SESSION_IDS])
def test_non_uuid_session_ids_are_refused_before_any_io(
    ours: PostgresBackend, session_id: str, admin: psycopg.Connection[Any],
    postgres_schema: str, table_name: str
) -> None:
    ours.create_collection()
    for call in (lambda: ours.append(session_id, numbered_records(1)),
                 lambda: ours.fetch(session_id), lambda: ours.clear(session_id)):
        with pytest.raises(ValueError, match="must be UUID strings"):
            call()
    row = admin.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(postgres_schema, table_name))).fetchone()
    assert row == (0,)


def test_each_layout_refuses_the_others_table(
    theirs: psycopg.Connection[Any], postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    PostgresChatMessageHistory.create_tables(theirs, table_name)
    wrong = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                         table=table_name)
    with pytest.raises(ConfigError, match="layout='langchain_postgres'"):
        wrong.create_collection()
    wrong.close()

    ours_table = f"{table_name}_ours"
    factory = history_factory("postgres", conninfo=postgres_url, schema=postgres_schema,
                              table=ours_table)
    factory("s").add_messages([HumanMessage("x")])
    factory.close()
    wrong = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                         table=ours_table, layout="langchain_postgres")
    with pytest.raises(ConfigError, match="layout 'chathistory'"):
        wrong.create_collection()
    wrong.close()
