"""The schema is a list of versioned steps: tables of earlier versions and peers upgrade in place.

Each test makes a table the way its maker did (langchain_community's
SQLChatMessageHistory, or this backend's earlier releases: before the listing
index, and the previous release, which added it on first use but kept no
versions), fills it, and checks that ``create_collection`` brings it to the
table a fresh one is, keeping every row, on MariaDB and on SQLite.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend, sql
from langchain_community.chat_message_histories import SQLChatMessageHistory
from langchain_core.messages import HumanMessage
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from chathistory import CollectionMissingError, ConfigError
from chathistory.catalog import KeepsCatalog
from chathistory.testing import numbered_records

SESSIONS = ["b", "A", "a", "é", "😀"]


@pytest.fixture(params=["mariadb", "sqlite"])
def url_and_table(request: pytest.FixtureRequest, sqlite_url: str) -> tuple[str, str]:
    if request.param == "sqlite":
        return sqlite_url, "message_store"
    return request.getfixturevalue("mysql_url"), request.getfixturevalue("mysql_table")


@pytest.fixture
def admin(url_and_table: tuple[str, str]) -> Iterator[Engine]:
    engine = create_engine(url_and_table[0])
    yield engine
    engine.dispose()


Schema = tuple[set[str], set[str], list[int]]


def _schema(admin: Engine, table: str) -> Schema:
    """The columns and indexes of the table and its catalog's, and the versions recorded."""
    inspector = inspect(admin)
    with admin.connect() as connection:
        versions = [row[0] for row in connection.execute(
            text(f"SELECT v FROM {table}_migrations ORDER BY v"))]
    tables = [name for name in (table, f"{table}_sessions") if inspector.has_table(name)]
    return ({f"{name}.{column['name']}" for name in tables
             for column in inspector.get_columns(name)},
            {str(index["name"]) for name in tables for index in inspector.get_indexes(name)},
            versions)


def _as_released(admin: Engine, table: str, layout: str, *, listing: bool) -> None:
    """The table an earlier release made, version 0's with the listing index or not,
    holding SESSIONS as that release wrote them (its append was this insert alone)."""
    statements = SQLAlchemyBackend.from_options(
        engine=admin, table=table, layout=layout).statements
    with admin.begin() as connection:
        sql.MIGRATIONS[0](connection, statements)
        if listing:
            sql.MIGRATIONS[1](connection, statements)
        for number, session in enumerate(SESSIONS):
            connection.execute(statements.insert, statements.rows(session, [
                json.dumps(record) for record in numbered_records(2, prefix=f"{number}-")]))


def _fresh_schema(url: str, table: str, layout: str) -> Schema:
    """What create_collection makes of nothing, in a table of its own (then dropped)."""
    other = f"{table}_fresh"
    backend = SQLAlchemyBackend.from_options(url=url, table=other, layout=layout)
    backend.create_collection()
    backend.close()
    engine = create_engine(url)
    columns, indexes, versions = _schema(engine, other)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {other}"))
        connection.execute(text(f"DROP TABLE {other}_migrations"))
        connection.execute(text(f"DROP TABLE IF EXISTS {other}_sessions"))
    engine.dispose()
    return ({column.replace(other, table) for column in columns},
            {index.replace(other, table) for index in indexes}, versions)


def _fill(backend: SQLAlchemyBackend) -> None:
    for number, session in enumerate(SESSIONS):
        backend.append(session, numbered_records(2, prefix=f"{number}-"))


def _check_kept_and_listed(backend: SQLAlchemyBackend) -> None:
    for number, session in enumerate(SESSIONS):
        assert backend.fetch(session) == numbered_records(2, prefix=f"{number}-")
    assert [info.session_id for info in backend.list_sessions()] == sorted(SESSIONS)


@pytest.mark.parametrize(("layout", "listing"), [
    ("chathistory", False), ("chathistory", True),
    ("langchain_community", False), ("langchain_community", True),
])
def test_a_table_an_earlier_release_made_is_upgraded_in_place(
    url_and_table: tuple[str, str], admin: Engine, layout: str, listing: bool
) -> None:
    url, table = url_and_table
    _as_released(admin, table, layout, listing=listing)
    backend = SQLAlchemyBackend.from_options(url=url, table=table, layout=layout)
    keeps_catalog = isinstance(backend, KeepsCatalog)
    assert keeps_catalog == (layout == "chathistory")
    if keeps_catalog:
        # Before the upgrade there is no catalog to count in: the append fails whole.
        with pytest.raises(CollectionMissingError, match="create_collection"):
            backend.append(SESSIONS[0], numbered_records(1))
    assert not inspect(admin).has_table(f"{table}_migrations")
    backend.create_collection()
    assert _schema(admin, table) == _fresh_schema(url, table, layout)
    assert _schema(admin, table)[2] == list(range(len(sql.MIGRATIONS)))
    _check_kept_and_listed(backend)
    if keeps_catalog:  # the catalog counts what the table held before it
        catalog: Any = backend
        summaries = catalog.session_summaries(SESSIONS)
        assert {session: entry.messages for session, entry in summaries.items()} == \
            dict.fromkeys(SESSIONS, 2)
        backend.append(SESSIONS[0], numbered_records(1))
        assert catalog.session_summaries([SESSIONS[0]])[SESSIONS[0]].messages == 3
        backend.clear(SESSIONS[0])
        backend.append(SESSIONS[0], numbered_records(2, prefix="0-"))
    backend.create_collection()  # nothing left to do
    _check_kept_and_listed(backend)
    backend.close()


def test_a_table_sqlchatmessagehistory_made_is_upgraded_in_place(
    url_and_table: tuple[str, str], admin: Engine
) -> None:
    url, table = url_and_table
    for session in SESSIONS:
        SQLChatMessageHistory(session, connection=admin, table_name=table).add_messages(
            [HumanMessage(f"{session}-theirs")])
    backend = SQLAlchemyBackend.from_options(url=url, table=table, layout="langchain_community")
    backend.create_collection()
    assert _schema(admin, table) == _fresh_schema(url, table, "langchain_community")
    for session in SESSIONS:
        assert [r["data"]["content"] for r in backend.fetch(session)] == [f"{session}-theirs"]
    assert [info.session_id for info in backend.list_sessions()] == sorted(SESSIONS)
    backend.close()


def test_a_new_column_is_one_new_step_applied_once(
    url_and_table: tuple[str, str], admin: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, table = url_and_table
    backend = SQLAlchemyBackend.from_options(url=url, table=table)
    backend.create_collection()
    _fill(backend)
    runs: list[str] = []

    def add_note(connection: Connection, statements: sql.Statements) -> None:
        runs.append(statements.table.name)
        connection.execute(text(f"ALTER TABLE {statements.table.name} ADD COLUMN note TEXT"))

    monkeypatch.setattr(sql, "MIGRATIONS", [*sql.MIGRATIONS, add_note])
    backend.create_collection()
    backend.create_collection()
    SQLAlchemyBackend.from_options(url=url, table=table).create_collection()
    assert runs == [table]
    columns, _, versions = _schema(admin, table)
    assert f"{table}.note" in columns and versions == list(range(len(sql.MIGRATIONS)))
    _check_kept_and_listed(backend)
    backend.close()


def test_the_record_of_a_dropped_table_does_not_stop_its_recreation(
    url_and_table: tuple[str, str], admin: Engine
) -> None:
    url, table = url_and_table
    backend = SQLAlchemyBackend.from_options(url=url, table=table)
    backend.create_collection()
    with admin.begin() as connection:
        connection.execute(text(f"DROP TABLE {table}"))
    backend.create_collection()
    _fill(backend)
    _check_kept_and_listed(backend)
    assert _schema(admin, table)[2] == list(range(len(sql.MIGRATIONS)))
    backend.close()


def test_a_table_of_the_other_layout_is_refused_before_any_step(
    url_and_table: tuple[str, str], admin: Engine
) -> None:
    url, table = url_and_table
    SQLAlchemyBackend.from_options(url=url, table=table,
                                   layout="langchain_community").create_collection()
    before = _schema(admin, table)
    with pytest.raises(ConfigError, match="lacks session_hash"):
        SQLAlchemyBackend.from_options(url=url, table=table).create_collection()
    assert _schema(admin, table) == before


def test_processes_creating_one_table_at_once_each_succeed(
    mysql_url: str, mysql_table: str, mysql_admin: Engine
) -> None:
    backends = [SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
                for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(backends))

    def create(backend: SQLAlchemyBackend) -> None:
        start.wait()
        try:
            backend.create_collection()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=create, args=(backend,)) for backend in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _schema(mysql_admin, mysql_table)[2] == list(range(len(sql.MIGRATIONS)))
    _fill(backends[0])
    _check_kept_and_listed(backends[1])
    for backend in backends:
        backend.close()
