"""The session catalog as this backend keeps it (the contract tests the behaviour itself):
one owner's newest page is an index range, every write path counts, concurrent first
appends count once each, and the peer's layout declares no catalog.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from chathistory_sqlalchemy.backend import SQLAlchemyCatalogBackend
from chathistory_sqlalchemy.sql import Catalog
from sqlalchemy import create_engine, inspect, text

from chathistory import ConfigError, RecordError
from chathistory.capabilities import capabilities_of
from chathistory.catalog import SessionSummary
from chathistory.testing import numbered_records

OWNERS = ("ada", "bob", "cy")
PER_OWNER = 300


@pytest.fixture(params=["mariadb", "sqlite"])
def catalog(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[SQLAlchemyCatalogBackend]:
    if request.param == "sqlite":
        url, table = sqlite_url, "chathistory_messages"
    else:
        url, table = request.getfixturevalue("mysql_url"), request.getfixturevalue("mysql_table")
    backend = SQLAlchemyBackend.from_options(url=url, table=table)
    assert isinstance(backend, SQLAlchemyCatalogBackend)
    backend.create_collection()
    yield backend
    backend.close()


def _plan(backend: SQLAlchemyCatalogBackend, *, with_cursor: bool) -> list[str]:
    """How the database runs the page of ada's 20 newest (after a cursor, or the first)."""
    catalog = backend.catalog
    after = None
    if with_cursor:
        first = catalog.page(owner="ada", newest_first=True, after=None, limit=50)
        engine = backend.client.engine()
        with engine.connect() as connection:
            after = Catalog.position(connection.execute(*first).all()[-1])
    statement, params = catalog.page(owner="ada", newest_first=True, after=after, limit=21)
    engine = backend.client.engine()
    compiled = statement.compile(dialect=engine.dialect)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            values = compiled.construct_params(params)
            rows = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}",
                tuple(values[name] for name in compiled.positiontup or ())).all()
            return [str(row[-1]) for row in rows]
        version = connection.execute(text("SELECT VERSION()")).scalar_one()
        if "MariaDB" not in version:
            pytest.skip("the plan check reads MariaDB's ANALYZE output")
        result = connection.exec_driver_sql(f"ANALYZE {compiled}",
                                            compiled.construct_params(params))
        return [repr(dict(row._mapping)) for row in result]


@pytest.mark.parametrize("with_cursor", [False, True])
def test_one_owners_newest_page_is_an_index_range(
    catalog: SQLAlchemyCatalogBackend, with_cursor: bool
) -> None:
    base = datetime.now(UTC)
    catalog.restore_summaries([
        SessionSummary(f"{owner}-{number:04}", owner, None, {}, base - timedelta(days=1),
                       base - timedelta(seconds=number), 0)
        for owner in OWNERS for number in range(PER_OWNER)])
    engine = catalog.client.engine()
    with engine.connect() as connection:
        table = catalog.catalog.table.name
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.execute(text(f"ANALYZE TABLE `{table}`")).all()
    plan = " | ".join(_plan(catalog, with_cursor=with_cursor))
    index = f"{catalog.catalog.table.name.removesuffix('_sessions')}_s_owner"
    assert index in plan, plan
    assert "filesort" not in plan and "TEMP B-TREE" not in plan, plan
    if engine.dialect.name != "sqlite":
        # MariaDB's ANALYZE: the first page reads its 21 entries, not the owner's 300; a
        # page after the first 50 walks the owner's index from the newest (ref access).
        (step,) = _plan(catalog, with_cursor=with_cursor)
        read = float(step.split("'r_rows': ")[1].split(",")[0].strip("Decimal()'\""))
        assert read <= (50 + 21 if with_cursor else 21), plan
    page = catalog.list_summaries(owner="ada", limit=20)
    assert [summary.session_id for summary in page.summaries] == [
        f"ada-{number:04}" for number in range(20)]


def test_every_write_path_counts_and_a_failed_write_counts_nothing(
    catalog: SQLAlchemyCatalogBackend
) -> None:
    catalog.append("one", numbered_records(2))
    catalog.append_many({"one": numbered_records(1), "two": numbered_records(3), "none": []})
    catalog.append_many_text({"two": ['{"type": "human", "data": {"content": "t"}}']})
    counts = {session: summary.messages
              for session, summary in catalog.session_summaries(["one", "two", "none"]).items()}
    assert counts == {"one": 3, "two": 4}
    before = catalog.session_summaries(["one", "two"])
    with pytest.raises(RecordError):
        catalog.append_many_text({"one": ['{"ok": 1}'], "two": ["not json"]})
    with pytest.raises(ValueError):
        catalog.append("one", [{"type": "human", "data": {"content": float("nan")}}])
    assert catalog.session_summaries(["one", "two"]) == before
    assert len(catalog.fetch("one")) == 3


def test_concurrent_first_appends_of_one_session_each_count(
    mysql_url: str, mysql_table: str
) -> None:
    backends = [SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
                for _ in range(4)]
    backends[0].create_collection()
    start = threading.Barrier(len(backends))
    errors: list[BaseException] = []

    def write(backend: SQLAlchemyBackend) -> None:
        start.wait()
        try:
            for _ in range(10):
                backend.append("shared", numbered_records(1))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(backend,)) for backend in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    catalog: Any = backends[0]
    assert catalog.session_summaries(["shared"])["shared"].messages == 40
    assert len(backends[1].fetch("shared")) == 40
    for backend in backends:
        backend.close()


@pytest.mark.parametrize("where", ["mariadb", "sqlite"])
def test_the_peers_layout_declares_no_catalog_and_gets_no_table(
    where: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    if where == "sqlite":
        url, table = sqlite_url, "message_store"
    else:
        url, table = request.getfixturevalue("mysql_url"), request.getfixturevalue("mysql_table")
    backend = SQLAlchemyBackend.from_options(url=url, table=table, layout="langchain_community")
    backend.create_collection()
    assert type(backend) is SQLAlchemyBackend
    assert not {"catalog", "summaries", "last_write", "delete_sessions_before"} & \
        capabilities_of(backend)
    engine = create_engine(url)
    assert not inspect(engine).has_table(f"{table}_sessions")
    engine.dispose()
    backend.close()


def test_the_catalog_class_refuses_a_layout_that_keeps_none(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="keeps no session catalog"):
        SQLAlchemyCatalogBackend.from_options(url=sqlite_url, layout="langchain_community")


def test_the_core_checks_a_cutoff_and_session_ids_before_any_statement(
    catalog: SQLAlchemyCatalogBackend,
) -> None:
    catalog.append("kept", numbered_records(1))
    with pytest.raises(ValueError, match="cutoff must be timezone-aware"):
        catalog.delete_sessions_before(datetime.now())
    with pytest.raises(TypeError, match="cutoff must be a datetime"):
        catalog.delete_sessions_before("2020-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a list of ids, not one str"):
        catalog.erase_sessions("kept")
    with pytest.raises(ValueError, match="lone surrogate"):
        catalog.session_summaries(["kept", "\udc80"])
    assert catalog.fetch_many(["kept", "kept"]) == {"kept": numbered_records(1)}
