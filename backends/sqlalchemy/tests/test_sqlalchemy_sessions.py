"""Listing sessions in code-point order, bulk reads and writes, and reads that create nothing.

The contract (test_sqlalchemy_contract.py) checks each capability with plain
ids; these tests use ids that MariaDB's collations and SQLite order
differently from Python (case, accents, trailing spaces, 4-byte UTF-8, ids
longer than the listing key), tables the listing index is not on yet, and
the MariaDB specifics of bulk writes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from chathistory_sqlalchemy.config import Layout
from chathistory_sqlalchemy.sql import IN_LIST, KEY_BYTES, MAX_INSERT_CHARS, Statements
from langchain_core.messages import HumanMessage, message_to_dict
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.dialects import mssql

from chathistory import CollectionMissingError, RecordError
from chathistory.catalog import KeepsCatalog
from chathistory.testing import numbered_records

LONG = "p" * (KEY_BYTES + 76)
AWKWARD_IDS = [
    "", " ", "\t", "a", "A", "B", "b", "a ", "a\t", "a  ", "s", "s ", "s\t",
    "e", "E", "é", "É", "e\u0301", "ß", "ss", "SS", "Z", "z", "中文", "\ue000", "\uffff",
    "😀", "😀a", "\U0010ffff",
    # Ids around and past the listing key's length: MariaDB keeps their first
    # KEY_BYTES bytes in session_key, so some of them share one key.
    "p" * (KEY_BYTES - 1), "p" * KEY_BYTES, LONG, LONG + "a", LONG + "B", LONG + "é",
    LONG + " ", "😀" * (KEY_BYTES // 4), "😀" * (KEY_BYTES // 4) + "a", "😀" * 300,
    "😀" * (KEY_BYTES // 4 - 1) + "abc",
]
EXPECTED = sorted(AWKWARD_IDS)
PROBES = ["", "A", "a", "a ", "b\x00", "s\x1f", "é", "p" * KEY_BYTES, LONG, LONG + "A",
          LONG + "b", "😀" * (KEY_BYTES // 4) + "\x00", "\U0010ffff\U0010ffff"]


def _pages(backend: SQLAlchemyBackend, limit: int) -> list[str]:
    listed: list[str] = []
    after: str | None = None
    while page := backend.list_sessions(after=after, limit=limit):
        assert len(page) <= limit
        listed.extend(info.session_id for info in page)
        assert len(listed) <= len(EXPECTED), "a page repeated sessions"
        after = page[-1].session_id
    return listed


def _check_listing(backend: SQLAlchemyBackend) -> None:
    """Every page, every page size, and pages after ids that are not stored."""
    for limit in (1, 2, 3, 7, 100):
        assert _pages(backend, limit) == EXPECTED, limit
    for probe in PROBES:
        listed = [info.session_id for info in backend.list_sessions(after=probe, limit=1000)]
        assert listed == [session for session in EXPECTED if session > probe], probe
    # Counts and write times come from the catalog, where one is kept.
    kept = isinstance(backend, KeepsCatalog)
    assert all((info.messages is None and info.last_write is None) is not kept
               for info in backend.list_sessions(limit=3))

    async def both_ways() -> list[list[str]]:
        first = await backend.alist_sessions(limit=5)
        rest = await backend.alist_sessions(after=first[-1].session_id, limit=1000)
        tail = await backend.alist_sessions(after=LONG, limit=2)
        return [[info.session_id for info in page] for page in (first, rest, tail)]

    first, rest, tail = asyncio.run(both_ways())
    assert first + rest == EXPECTED
    assert tail == [session for session in EXPECTED if session > LONG][:2]


def _reads(backend: SQLAlchemyBackend) -> list[Callable[[], object]]:
    """Each read-only call, sync and async."""
    return [lambda: backend.list_sessions(), lambda: backend.list_sessions(after="a"),
            lambda: backend.fetch_many(["s"]), lambda: backend.fetch_many_text(["s"]),
            lambda: backend.fetch("s"),
            lambda: asyncio.run(backend.alist_sessions()),
            lambda: asyncio.run(backend.afetch_many(["s"])),
            lambda: asyncio.run(backend.afetch_many_text(["s"]))]


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
    assert [info.session_id for info in backend.list_sessions(limit=len(stored) + 1)] == list(
        stored)


# -- MariaDB ------------------------------------------------------------------------------


def test_mariadb_pages_in_code_point_order_whatever_the_collation(
    mariadb_backend: SQLAlchemyBackend
) -> None:
    _store(mariadb_backend)
    _check_listing(mariadb_backend)
    _check_bulk_reads(mariadb_backend)


def _peer_table(admin: Engine, table: str, collation: str) -> None:
    """The table as SQLChatMessageHistory makes it, in a case- and accent-folding collation."""
    with admin.begin() as connection:
        connection.execute(text(
            f"CREATE TABLE `{table}` (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"session_id TEXT, message TEXT) DEFAULT CHARSET=utf8mb4 COLLATE={collation}"))


@pytest.mark.parametrize("collation", ["utf8mb4_general_ci", "utf8mb4_unicode_520_ci"])
def test_a_peers_folding_table_pages_correctly_before_and_after_create_collection(
    mysql_url: str, mysql_table: str, mysql_admin: Engine, collation: str
) -> None:
    _peer_table(mysql_admin, mysql_table, collation)
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                             layout="langchain_community")
    _store(backend)
    with mysql_admin.connect() as connection:  # a row their class never writes
        connection.execute(text(f"INSERT INTO `{mysql_table}` (message) VALUES ('{{}}')"))
        connection.commit()
    # Read in place, untouched: the pages come from the table itself.
    _check_listing(backend)
    _check_bulk_reads(backend)
    assert {column["name"] for column in inspect(mysql_admin).get_columns(mysql_table)} == {
        "id", "session_id", "message"}
    # create_collection adds the listing column and index; the pages are the same.
    backend.create_collection()
    assert "session_key" in {column["name"] for column in
                             inspect(mysql_admin).get_columns(mysql_table)}
    _check_listing(backend)
    backend.close()


def test_a_table_of_an_older_version_lists_and_is_upgraded_by_create_collection(
    mariadb_backend: SQLAlchemyBackend, mysql_admin: Engine, mysql_table: str
) -> None:
    _store(mariadb_backend)
    with mysql_admin.begin() as connection:  # as that version left it: no listing, no versions
        connection.execute(text(f"ALTER TABLE `{mysql_table}` DROP INDEX "
                                f"`{mysql_table}_session_key_idx`, DROP COLUMN session_key"))
        connection.execute(text(f"DROP TABLE `{mysql_table}_migrations`"))
    _check_listing(mariadb_backend)
    mariadb_backend.create_collection()
    mariadb_backend.create_collection()
    indexes = {index["name"] for index in inspect(mysql_admin).get_indexes(mysql_table)}
    assert f"{mysql_table}_session_key_idx" in indexes
    _check_listing(mariadb_backend)


def _analyze_page(backend: SQLAlchemyBackend, admin: Engine, limit: int) -> dict[str, str]:
    """MariaDB's ANALYZE of the first page's statement: the rows it really read."""
    page = backend.statements.listing.page
    assert page is not None
    compiled = page.compile(dialect=admin.dialect)
    with admin.connect() as connection:
        if "MariaDB" not in connection.execute(text("SELECT VERSION()")).scalar_one():
            pytest.skip("the plan check reads MariaDB's ANALYZE output")
        (step,) = [dict(row._mapping) for row in connection.exec_driver_sql(
            f"ANALYZE {compiled}", {"start": "", "n": limit + 1})]
    return step


def test_a_page_reads_one_index_entry_per_session_not_its_messages(
    mariadb_backend: SQLAlchemyBackend, mysql_admin: Engine, mysql_table: str
) -> None:
    mariadb_backend.append_many({f"s{number:03d}": numbered_records(200) for number in range(60)})
    with mysql_admin.connect() as connection:
        connection.execute(text(f"ANALYZE TABLE `{mysql_table}`")).all()
    step = _analyze_page(mariadb_backend, mysql_admin, limit=10)
    assert step["key"] == f"{mysql_table}_session_key_idx"
    assert "Using index for group-by" in step["Extra"]
    assert float(step["r_rows"]) <= 11  # of 12,000 index entries
    assert [info.session_id for info in mariadb_backend.list_sessions(limit=3)] == [
        "s000", "s001", "s002"]


def test_append_many_writes_several_inserts_as_one_transaction(
    mariadb_backend: SQLAlchemyBackend
) -> None:
    big = "x" * (MAX_INSERT_CHARS // 3)
    batches = {f"big-{number}": [message_to_dict(HumanMessage(f"{number}-{part}-{big}"))
                                 for part in range(2)] for number in range(4)}
    mariadb_backend.append("big-1", numbered_records(1, prefix="before"))
    mariadb_backend.append_many(batches)  # more than MAX_INSERT_CHARS: one INSERT per ~2 sessions
    stored = mariadb_backend.fetch_many(list(batches))
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
    assert backend.list_sessions() == []
    with pytest.raises(RecordError):
        asyncio.run(backend.aappend_many_text(
            {session: [json.dumps(record) for record in records]
             for session, records in batches.items()}))
    assert backend.fetch_many(list(batches)) == {}
    backend.close()


def test_reads_of_a_missing_table_raise_and_create_nothing(
    mysql_url: str, mysql_table: str, mysql_admin: Engine
) -> None:
    for layout in ("chathistory", "langchain_community"):
        backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                                 layout=layout)
        for read in _reads(backend):
            with pytest.raises(CollectionMissingError, match="nothing was created"):
                read()
        backend.close()
    assert not inspect(mysql_admin).has_table(mysql_table)


def test_mariadb_fetch_many_of_more_sessions_than_one_statement_takes(
    mariadb_backend: SQLAlchemyBackend
) -> None:
    _check_many_sessions(mariadb_backend)


# -- SQLite -------------------------------------------------------------------------------


@pytest.fixture(params=["chathistory", "langchain_community"])
def sqlite(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[SQLAlchemyBackend]:
    backend = SQLAlchemyBackend.from_options(url=sqlite_url, layout=request.param)
    backend.create_collection()
    yield backend
    backend.close()


def test_sqlite_pages_in_code_point_order(sqlite: SQLAlchemyBackend) -> None:
    _store(sqlite)
    _check_listing(sqlite)
    _check_bulk_reads(sqlite)


def test_sqlite_fetch_many_of_more_sessions_than_one_statement_takes(
    sqlite: SQLAlchemyBackend
) -> None:
    _check_many_sessions(sqlite)


def test_a_sqlite_table_without_the_listing_index_is_read_whole_until_upgraded(
    sqlite: SQLAlchemyBackend, sqlite_url: str
) -> None:
    _store(sqlite)
    index = sqlite.statements.listing.index_name
    admin = create_engine(sqlite_url)
    with admin.begin() as connection:  # as an older version left it: no listing, no versions
        connection.execute(text(f'DROP INDEX "{index}"'))
        connection.execute(text(f'DROP TABLE "{sqlite.statements.versions.name}"'))
    _check_listing(sqlite)
    sqlite.create_collection()
    assert index in {found["name"] for found in
                     inspect(admin).get_indexes(sqlite.statements.table.name)}
    _check_listing(sqlite)
    admin.dispose()


def _steps_of_a_page(path: Path, layout: str, per_session: int) -> int:
    """How many SQLite virtual-machine steps the first page of 50 takes, of 120 sessions."""
    engine = create_engine(f"sqlite:///{path}")
    backend = SQLAlchemyBackend.from_options(engine=engine, layout=layout)
    backend.create_collection()
    backend.append_many({f"s{number:03d}": numbered_records(per_session)
                         for number in range(120)})
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    @event.listens_for(engine, "connect")
    def on_connect(connection: object, record: object) -> None:
        connection.set_progress_handler(count, 1)  # type: ignore[attr-defined]

    engine.dispose()  # the next connection counts
    assert len(backend.list_sessions(limit=50)) == 50
    backend.close()
    engine.dispose()
    return steps


@pytest.mark.parametrize("layout", ["chathistory", "langchain_community"])
def test_a_sqlite_page_costs_what_its_sessions_cost_not_their_messages(
    tmp_path: Path, layout: str
) -> None:
    few = _steps_of_a_page(tmp_path / "few.db", layout, per_session=5)
    many = _steps_of_a_page(tmp_path / "many.db", layout, per_session=200)
    assert few > 0
    assert many <= few * 1.1, (few, many)  # 40 times the messages, the same steps


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    for layout in ("chathistory", "langchain_community"):
        backend = SQLAlchemyBackend.from_options(url=f"sqlite:///{path}", layout=layout)
        for read in _reads(backend):
            with pytest.raises(CollectionMissingError, match="no database at"):
                read()
        backend.close()
    assert not path.exists()


def test_reading_a_sqlite_file_without_the_table_creates_nothing(
    tmp_path: Path
) -> None:
    path = tmp_path / "other.db"
    other = create_engine(f"sqlite:///{path}")
    with other.begin() as connection:
        connection.execute(text("CREATE TABLE unrelated (x INTEGER)"))
    backend = SQLAlchemyBackend.from_options(url=f"sqlite:///{path}")
    for read in _reads(backend):
        with pytest.raises(CollectionMissingError, match="nothing was created"):
            read()
    assert inspect(other).get_table_names() == ["unrelated"]
    backend.close()
    other.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(params=["chathistory", "langchain_community"])
def postgres(request: pytest.FixtureRequest, postgres_admin: Engine, postgres_table: str
             ) -> Iterator[SQLAlchemyBackend]:
    url = postgres_admin.url.render_as_string(hide_password=False)
    backend = SQLAlchemyBackend.from_options(url=url, table=postgres_table,
                                             layout=request.param)
    backend.create_collection()
    yield backend
    backend.close()


def test_postgres_pages_in_code_point_order(postgres: SQLAlchemyBackend) -> None:
    _store(postgres)
    _check_listing(postgres)
    _check_bulk_reads(postgres)


def test_a_peers_postgres_table_in_a_folding_collation_pages_in_code_point_order(
    postgres_admin: Engine, postgres_table: str
) -> None:
    """ICU's root collation orders "a" < "A" < "b": the listing orders by code point anyway,
    read in place and after create_collection adds the listing index."""
    with postgres_admin.begin() as connection:
        connection.execute(text(f'CREATE TABLE "{postgres_table}" (id SERIAL PRIMARY KEY, '
                                'session_id TEXT COLLATE "und-x-icu", message TEXT)'))
    url = postgres_admin.url.render_as_string(hide_password=False)
    backend = SQLAlchemyBackend.from_options(url=url, table=postgres_table,
                                             layout="langchain_community")
    _store(backend)
    _check_listing(backend)
    backend.create_collection()
    _check_listing(backend)
    backend.close()


def test_a_postgres_table_without_the_listing_index_lists_until_upgraded(
    postgres: SQLAlchemyBackend, postgres_admin: Engine, postgres_table: str
) -> None:
    _store(postgres)
    index = postgres.statements.listing.index_name
    with postgres_admin.begin() as connection:  # as version 3 left it
        connection.execute(text(f'DROP INDEX "{index}"'))
        connection.execute(text(f'DELETE FROM "{postgres_table}_migrations" WHERE v = 4'))
    _check_listing(postgres)
    postgres.create_collection()
    assert index in {found["name"] for found in inspect(postgres_admin).get_indexes(
        postgres_table)}
    _check_listing(postgres)


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_a_postgres_page_reads_one_index_entry_per_session_not_its_messages(
    postgres: SQLAlchemyBackend, postgres_admin: Engine, postgres_table: str
) -> None:
    postgres.append_many({f"s{number:03d}": numbered_records(200) for number in range(60)})
    page = postgres.statements.listing.page
    assert page is not None
    with postgres_admin.connect() as connection:
        connection.execute(text(f'ANALYZE "{postgres_table}"'))
        ((plan,),) = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {page.compile(dialect=postgres_admin.dialect)}",
            {"start": "s010", "n": 11}).one()
    scans = [node for node in _plan_nodes(plan["Plan"])
             if node.get("Relation Name") == postgres_table]
    assert scans and all(node["Node Type"] in ("Index Only Scan", "Index Scan")
                         and node["Index Name"] == postgres.statements.listing.index_name
                         for node in scans), scans
    # 11 probes of one entry each, of 12,000 index entries
    assert sum(node["Actual Rows"] * node["Actual Loops"] for node in scans) <= 11
    assert [info.session_id for info in postgres.list_sessions(after="s010", limit=3)] == [
        "s011", "s012", "s013"]


# -- other dialects -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["chathistory", "langchain_community"])
def test_another_dialect_reads_every_id_and_pages_them_here(layout: Layout) -> None:
    """SQL Server, say: no listing index, and a collation that need not be code-point
    order, so a page is one read of every distinct id, sorted and cut here."""
    listing = Statements("t", layout, mssql.dialect()).listing  # type: ignore[no-untyped-call]
    assert listing.kind == "other" and listing.page is None
    steps = listing.pages("a", 2)
    statement, params = next(steps)
    assert str(statement).startswith("SELECT DISTINCT") and params == {}
    with pytest.raises(StopIteration) as page:
        steps.send([("1", "b"), ("2", "A"), ("3", "a"), ("4", "é"), ("5", None), ("6", "c")])
    assert page.value.value == ["b", "c"]
