"""SQLChatMessageHistory's table, in place, both ways, on MariaDB and on SQLite.

The peer's own class (langchain_community.chat_message_histories.SQLChatMessageHistory)
writes and ours reads, and the reverse, on one table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from langchain_community.chat_message_histories import SQLChatMessageHistory
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import Engine, create_engine, inspect

from chathistory import ChatHistory
from chathistory.testing import sample_messages


@pytest.fixture(params=["mariadb", "sqlite"])
def database(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[tuple[str, str]]:
    """(url, table) on each database; the MariaDB table is dropped afterwards."""
    if request.param == "sqlite":
        yield sqlite_url, "message_store"
        return
    url: str = request.getfixturevalue("mysql_url")
    yield url, request.getfixturevalue("mysql_table")


@pytest.fixture
def engine(database: tuple[str, str]) -> Iterator[Engine]:
    """The engine the peer is given, as its docs show for an existing engine."""
    engine = create_engine(database[0])
    yield engine
    engine.dispose()


@pytest.fixture
def ours(database: tuple[str, str]) -> Iterator[SQLAlchemyBackend]:
    url, table = database
    backend = SQLAlchemyBackend.from_options(url=url, table=table, layout="langchain_community")
    yield backend
    backend.close()


def test_we_read_and_append_to_what_they_wrote(
    database: tuple[str, str], engine: Engine, ours: SQLAlchemyBackend
) -> None:
    table = database[1]
    theirs = SQLChatMessageHistory("user-1", connection=engine, table_name=table)
    messages = sample_messages()
    theirs.add_messages(messages)
    SQLChatMessageHistory("user-2", connection=engine, table_name=table).add_messages(
        [HumanMessage("someone else")])

    history = ChatHistory("user-1", backend=ours)  # adds our index to their table
    assert history.messages == messages
    assert history.get_messages(limit=2) == messages[-2:]
    history.add_messages([HumanMessage("and now through chathistory"), AIMessage("ok")])
    expected = [*messages, HumanMessage("and now through chathistory"), AIMessage("ok")]
    assert theirs.messages == expected
    assert asyncio.run(history.aget_messages()) == expected
    theirs.add_messages([HumanMessage("theirs again")])
    assert history.get_messages(limit=1) == [HumanMessage("theirs again")]
    assert ChatHistory("user-2", backend=ours).messages == [HumanMessage("someone else")]


def test_they_read_what_we_wrote(
    database: tuple[str, str], engine: Engine, ours: SQLAlchemyBackend
) -> None:
    table = database[1]
    history = ChatHistory("user-1", backend=ours)  # creates their table, and our index
    messages = sample_messages()
    history.add_messages(messages[:3])
    asyncio.run(history.aadd_messages(messages[3:]))
    ChatHistory("user-2", backend=ours).add_messages([HumanMessage("other session")])

    theirs = SQLChatMessageHistory("user-1", connection=engine, table_name=table)
    assert theirs.messages == messages
    theirs.clear()
    assert history.messages == []
    assert ChatHistory("user-2", backend=ours).messages == [HumanMessage("other session")]
    # Their columns, their types' reading; our index beside them, and on MariaDB the
    # virtual column that lists sessions in id order, with its index.
    columns = {column["name"]: column for column in inspect(engine).get_columns(table)}
    indexes = {index["name"] for index in inspect(engine).get_indexes(table)}
    if engine.dialect.name == "sqlite":
        assert set(columns) == {"id", "session_id", "message"}
        assert indexes == {f"{table}_session_idx"}
    else:
        assert set(columns) == {"id", "session_id", "message", "session_key"}
        assert columns["session_key"]["computed"]["persisted"] is False
        assert indexes == {f"{table}_session_idx", f"{table}_session_key_idx"}


def test_their_url_form_and_ours_share_one_table(
    database: tuple[str, str], ours: SQLAlchemyBackend
) -> None:
    """SQLChatMessageHistory built from a URL string, as its docs show."""
    url, table = database
    theirs = SQLChatMessageHistory("s", connection=url, table_name=table)
    try:
        theirs.add_message(HumanMessage("from a URL"))
        ours.create_collection()
        ours.append("s", [{"type": "ai", "data": {"content": "from ours", "type": "ai"}}])
        assert [message.content for message in theirs.messages] == ["from a URL", "from ours"]
    finally:
        theirs.engine.dispose()
