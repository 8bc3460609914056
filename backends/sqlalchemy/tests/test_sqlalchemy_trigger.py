"""MySQL/MariaDB: the catalog's count is kept by a trigger on the messages table (version 3).

An append of one session sends its INSERT alone (the trigger's upsert locks the
entry before InnoDB gives the rows ids: test_sqlalchemy_concurrency checks the
order); any writer's INSERT is counted, SQLChatMessageHistory's on this table
too (the trigger gives its rows their session_hash); a new session's first append waits
for no other new session's (no gap lock); a table of version 2 refuses appends
until it is upgraded in place, then counts each message once; and where binary
logging keeps a user without SUPER from creating the trigger, the error says
what to do (on a private server with ``--log-bin``: private_mariadb.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend, sql
from chathistory_sqlalchemy.backend import SQLAlchemyCatalogBackend
from langchain_community.chat_message_histories import SQLChatMessageHistory
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import Engine, create_engine, event, exc, text

from chathistory import CollectionMissingError, PermissionDeniedError
from chathistory.testing import numbered_records


@pytest.fixture
def catalog(mysql_url: str, mysql_table: str) -> Iterator[SQLAlchemyCatalogBackend]:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    assert isinstance(backend, SQLAlchemyCatalogBackend)
    backend.create_collection()
    yield backend
    backend.close()


def _statements_sent(backend: SQLAlchemyBackend) -> list[str]:
    """Every statement ``backend``'s sync engine sends from now on (first words)."""
    sent: list[str] = []

    @event.listens_for(backend.client.engine(), "before_cursor_execute")
    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()[:3]))

    return sent


def test_an_append_of_one_session_sends_its_insert_alone(
    catalog: SQLAlchemyCatalogBackend, mysql_table: str
) -> None:
    catalog.append("warm", numbered_records(1))  # the first append checks the version
    sent = _statements_sent(catalog)
    catalog.append("one", numbered_records(2))
    catalog.append("one", numbered_records(1))
    assert sent == [f"INSERT INTO {mysql_table}"] * 2
    # Several sessions: their entries are upserted first (each lock before any id).
    sent.clear()
    catalog.append_many({"one": numbered_records(1), "two": numbered_records(2)})
    assert sent == [f"INSERT INTO {mysql_table}_sessions", f"INSERT INTO {mysql_table}"]
    counts = {session: entry.messages
              for session, entry in catalog.session_summaries(["one", "two"]).items()}
    assert counts == {"one": 4, "two": 2}


def test_any_writers_insert_is_counted(
    catalog: SQLAlchemyCatalogBackend, mysql_admin: Engine, mysql_table: str
) -> None:
    catalog.append("s", numbered_records(1))
    (before,) = catalog.session_summaries(["s"]).values()
    rows = catalog.statements.rows("s", [json.dumps(record) for record in
                                         numbered_records(2, prefix="theirs-")])
    with mysql_admin.begin() as connection:  # another client, plain SQL
        connection.execute(catalog.statements.insert, rows)
        connection.execute(catalog.statements.insert, catalog.statements.rows(
            "new", ['{"type": "human", "data": {"content": "x"}}']))
    entries = catalog.session_summaries(["s", "new"])
    assert (entries["s"].messages, entries["new"].messages) == (3, 1)
    assert entries["s"].updated_at >= before.updated_at
    assert entries["s"].created_at == before.created_at
    assert entries["new"].metadata == {} and entries["new"].owner is None
    # A statement that fails at its last row counts none of its rows.
    with pytest.raises(exc.IntegrityError, match="cannot be null"), \
            mysql_admin.begin() as connection:
        connection.execute(catalog.statements.insert, [*rows, {
            "session_hash": sql.session_hash("s"), "session_id": "s", "message": None}])
    assert catalog.session_summaries(["s"])["s"].messages == 3


def test_a_new_sessions_first_append_waits_for_no_other_new_sessions(
    catalog: SQLAlchemyCatalogBackend, mysql_url: str
) -> None:
    """Two writers (plain SQL) each append a new session's first messages, the first one's
    transaction still open: the second does not wait for it (it would fail at its lock
    wait timeout, 1 s). The trigger's upsert inserts an entry without locking the gap of
    the index it goes into. An UPDATE first, upserting only where it found no entry,
    locks that gap: then the second writer waits for the first's commit, and writers
    racing to append new sessions deadlock (benchmarks/bench_trigger_cost.py: 5 and 37
    deadlocks in 800 appends, four writers appending to each new session at once)."""
    statements = catalog.statements
    engine = create_engine(mysql_url)
    try:
        with engine.connect() as first, engine.connect() as second:
            second.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            second.commit()
            with first.begin():
                first.execute(statements.insert, statements.rows("new-1", ["{}", "{}"]))
                with second.begin():
                    second.execute(statements.insert, statements.rows("new-2", ["{}"]))
    finally:
        engine.dispose()
    entries = catalog.session_summaries(["new-1", "new-2"])
    assert {session: entry.messages for session, entry in entries.items()} == {
        "new-1": 2, "new-2": 1}


def test_a_table_of_version_2_is_upgraded_and_then_counts_each_message_once(
    mysql_url: str, mysql_admin: Engine, mysql_table: str
) -> None:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    statements = backend.statements
    with mysql_admin.begin() as connection:  # what the previous release made and wrote
        statements.versions.create(connection)
        for version in range(3):
            sql.MIGRATIONS[version](connection, statements)
            connection.execute(statements.versions.insert(), {"v": version})
            if version == 0:  # step 2 counts them
                connection.execute(statements.insert, statements.rows("s", ["{}", "{}"]))
    with pytest.raises(CollectionMissingError, match="create_collection"):
        backend.append("s", numbered_records(1))
    assert len(backend.fetch("s")) == 2  # nothing was written
    backend.create_collection()
    with mysql_admin.connect() as connection:
        assert connection.execute(text(
            f"SELECT max(v) FROM `{mysql_table}_migrations`")).scalar() == len(sql.MIGRATIONS) - 1
    backend.append("s", numbered_records(2))
    catalog: Any = backend
    assert catalog.session_summaries(["s"])["s"].messages == 4
    assert len(backend.fetch("s")) == 4
    backend.close()


def test_without_super_under_binary_logging_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from private_mariadb import PrivateServer

    try:  # the server's files: in tmp_path
        server = PrivateServer("test", ("--log-bin=binlog", "--innodb-buffer-pool-size=32M"),
                               parent=tmp_path)
    except SystemExit as error:
        pytest.skip(str(error))
    with server:
        admin = server.connect()
        cursor = admin.cursor()
        cursor.execute("CREATE USER app@'127.0.0.1'")
        cursor.execute("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX, ALTER, TRIGGER "
                       "ON test.* TO app@'127.0.0.1'")
        app_url = f"mysql+pymysql://app@127.0.0.1:{server.port}/test"
        app = SQLAlchemyBackend.from_options(url=app_url)
        with pytest.raises(PermissionDeniedError,
                           match=r"run create_collection\(\) once as such a user.*"
                                 r"log_bin_trust_function_creators=1"):
            app.create_collection()
        with pytest.raises(CollectionMissingError, match="create_collection"):
            app.append("s", numbered_records(1))
        # The remedy it names: an administrator creates the table once.
        owner = SQLAlchemyBackend.from_options(url=server.url)
        owner.create_collection()
        owner.close()
        app.append("s", numbered_records(2))
        assert app.session_summaries(["s"])["s"].messages == 2  # type: ignore[attr-defined]
        app.close()
        admin.close()


def test_sqlchatmessagehistory_writing_to_this_table_is_read_and_counted(
    catalog: SQLAlchemyCatalogBackend, mysql_admin: Engine, mysql_table: str
) -> None:
    catalog.append("s", numbered_records(1, prefix="ours-"))
    theirs = SQLChatMessageHistory("s", connection=mysql_admin, table_name=mysql_table)
    theirs.add_messages([HumanMessage("theirs-0"), AIMessage("theirs-1")])
    SQLChatMessageHistory("😀 new", connection=mysql_admin, table_name=mysql_table
                          ).add_messages([HumanMessage("x")])
    assert [record["data"]["content"] for record in catalog.fetch("s")] == [
        "ours-0", "theirs-0", "theirs-1"]
    assert [message.content for message in theirs.messages] == [
        "ours-0", "theirs-0", "theirs-1"]
    entries = catalog.session_summaries(["s", "😀 new"])
    assert (entries["s"].messages, entries["😀 new"].messages) == (3, 1)
    assert catalog.fetch("😀 new")[0]["data"]["content"] == "x"
    page = catalog.list_summaries(limit=10)
    assert {entry.session_id for entry in page.summaries} == {"s", "😀 new"}
