"""Bulk reads and writes: only the sessions asked for, all or nothing, on MariaDB and SQLite.

The contract (test_sqlalchemy_contract.py) checks each capability with plain
ids; these tests use ids that MariaDB's collations fold (case, accents,
trailing spaces), more sessions than one statement reads, and the MariaDB
specifics of bulk writes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from chathistory_sqlalchemy.sql import IN_LIST, MAX_INSERT_CHARS
from langchain_core.messages import HumanMessage, message_to_dict
from sqlalchemy import Engine, inspect, text

from chathistory import CollectionMissingError, RecordError
from chathistory.testing import numbered_records

LONG = "p" * 1100
AWKWARD_IDS = [
    "", " ", "\t", "a", "A", "B", "b", "a ", "a\t", "a  ", "s", "s ", "s\t",
    "e", "E", "é", "É", "e\u0301", "ß", "ss", "SS", "Z", "z", "中文", "\ue000", "\uffff",
    "😀", "😀a", "\U0010ffff", LONG, LONG + "a", LONG + "B", LONG + "é", LONG + " ",
]


def _store(backend: SQLAlchemyBackend) -> None:
    backend.append_many({session: numbered_records(2, prefix=f"{number}-")
                         for number, session in enumerate(AWKWARD_IDS)})


def _check_bulk_reads(backend: SQLAlchemyBackend) -> None:
    """Each session read whole, and only the sessions asked for, whatever the collation."""
    stored = {session: numbered_records(2, prefix=f"{number}-")
              for number, session in enumerate(AWKWARD_IDS)}
    assert backend.fetch_many(AWKWARD_IDS) == stored
    for asked in (["a"], ["s"], ["e", "ss"], [LONG], ["SS", "z", "missing"]):
        assert backend.fetch_many(asked) == {session: stored[session] for session in asked
                                             if session in stored}
        texts = asyncio.run(backend.afetch_many_text(asked))
        assert {session: [json.loads(item) for item in session_texts]
                for session, session_texts in texts.items()} == {
            session: stored[session] for session in asked if session in stored}


def _check_many_sessions(backend: SQLAlchemyBackend) -> None:
    """More sessions than one IN list takes, asked in another order, with duplicates."""
    stored = {f"s{number:05d}": numbered_records(1 + number % 3, prefix=f"{number}-")
              for number in range(IN_LIST * 2 + 7)}
    backend.append_many(stored)
    asked = [*reversed(stored), "missing", "s00003"]
    assert backend.fetch_many(asked) == stored
    assert asyncio.run(backend.afetch_many(asked)) == stored


# -- MariaDB ------------------------------------------------------------------------------


@pytest.fixture(params=["chathistory", "langchain_community"])
def mariadb(request: pytest.FixtureRequest, mysql_url: str, mysql_table: str
            ) -> Iterator[SQLAlchemyBackend]:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                             layout=request.param)
    backend.create_collection()
    yield backend
    backend.close()


def test_mariadb_bulk_reads_take_only_the_sessions_asked_for(mariadb: SQLAlchemyBackend
                                                             ) -> None:
    _store(mariadb)
    _check_bulk_reads(mariadb)


def _peer_table(admin: Engine, table: str, collation: str) -> None:
    """The table as SQLChatMessageHistory makes it, in a case- and accent-folding collation."""
    with admin.begin() as connection:
        connection.execute(text(
            f"CREATE TABLE `{table}` (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"session_id TEXT, message TEXT) DEFAULT CHARSET=utf8mb4 COLLATE={collation}"))


@pytest.mark.parametrize("collation", ["utf8mb4_general_ci", "utf8mb4_unicode_520_ci"])
def test_a_peers_folding_table_is_read_exactly(
    mysql_url: str, mysql_table: str, mysql_admin: Engine, collation: str
) -> None:
    _peer_table(mysql_admin, mysql_table, collation)
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                             layout="langchain_community")
    _store(backend)
    _check_bulk_reads(backend)
    backend.close()


def test_mariadb_fetch_many_of_more_sessions_than_one_statement_takes(
    mariadb: SQLAlchemyBackend
) -> None:
    _check_many_sessions(mariadb)


def test_append_many_writes_several_inserts_as_one_transaction(
    mariadb: SQLAlchemyBackend
) -> None:
    big = "x" * (MAX_INSERT_CHARS // 3)
    batches = {f"big-{number}": [message_to_dict(HumanMessage(f"{number}-{part}-{big}"))
                                 for part in range(2)] for number in range(4)}
    mariadb.append("big-1", numbered_records(1, prefix="before"))
    mariadb.append_many(batches)  # more than MAX_INSERT_CHARS: one INSERT per ~2 sessions
    stored = mariadb.fetch_many(list(batches))
    assert stored == {**batches, "big-1": numbered_records(1, prefix="before")
                      + batches["big-1"]}


def test_a_failing_later_insert_leaves_nothing_of_the_earlier_ones(
    mysql_url: str, mysql_table: str, mysql_admin: Engine
) -> None:
    """The peer's TEXT column holds 64 KiB: the last session's record is refused."""
    _peer_table(mysql_admin, mysql_table, "utf8mb4_bin")
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                             layout="langchain_community")
    backend.create_collection()
    fits = "x" * 60_000
    batches = {f"s{number}": [message_to_dict(HumanMessage(fits))] * 10 for number in range(3)}
    batches["too-long"] = [message_to_dict(HumanMessage("y" * 70_000))]
    with pytest.raises(RecordError, match="cannot store this batch"):
        backend.append_many(batches)
    assert backend.fetch_many(list(batches)) == {}
    with pytest.raises(RecordError):
        asyncio.run(backend.aappend_many_text(
            {session: [json.dumps(record) for record in records]
             for session, records in batches.items()}))
    assert backend.fetch_many(list(batches)) == {}
    backend.close()


def test_bulk_reads_of_a_missing_table_raise_and_create_nothing(
    mysql_url: str, mysql_table: str, mysql_admin: Engine
) -> None:
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    for read in (lambda: backend.fetch_many(["s"]),
                 lambda: asyncio.run(backend.afetch_many_text(["s"]))):
        with pytest.raises(CollectionMissingError, match="nothing was created"):
            read()
    backend.close()
    assert not inspect(mysql_admin).has_table(mysql_table)


# -- SQLite -------------------------------------------------------------------------------


@pytest.fixture(params=["chathistory", "langchain_community"])
def sqlite(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[SQLAlchemyBackend]:
    backend = SQLAlchemyBackend.from_options(url=sqlite_url, layout=request.param)
    backend.create_collection()
    yield backend
    backend.close()


def test_sqlite_bulk_reads_take_only_the_sessions_asked_for(sqlite: SQLAlchemyBackend
                                                            ) -> None:
    _store(sqlite)
    _check_bulk_reads(sqlite)


def test_sqlite_fetch_many_of_more_sessions_than_one_statement_takes(
    sqlite: SQLAlchemyBackend
) -> None:
    _check_many_sessions(sqlite)
