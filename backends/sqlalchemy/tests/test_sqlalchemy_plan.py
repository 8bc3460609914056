"""On MariaDB/MySQL, fetch(limit=N) reads only the newest N rows, through the index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import Engine, text

from chathistory.testing import numbered_records

SESSION_SIZE = 3000


@pytest.fixture(params=["chathistory", "langchain_community"])
def filled(request: pytest.FixtureRequest, mysql_url: str, mysql_table: str,
           mysql_admin: Engine) -> Iterator[SQLAlchemyBackend]:
    """A table of 4 sessions of SESSION_SIZE messages each, analyzed."""
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                             layout=request.param)
    backend.create_collection()
    for session in ("a", "big", "c", "d"):
        for start in range(0, SESSION_SIZE, 1000):
            backend.append(session, numbered_records(1000, prefix=f"{start}-"))
    with mysql_admin.connect() as connection:
        connection.execute(text(f"ANALYZE TABLE `{mysql_table}`")).all()
    yield backend
    backend.close()


def _analyze(backend: SQLAlchemyBackend, mysql_admin: Engine, limit: int
             ) -> list[dict[str, Any]]:
    """MariaDB's ANALYZE (the plan with the rows each step really read) of fetch's query."""
    statements = backend.statements
    compiled = statements.select_newest.compile(dialect=mysql_admin.dialect)
    params = {**statements.session("big"), "limit": limit}
    with mysql_admin.connect() as connection:
        version = connection.execute(text("SELECT VERSION()")).scalar_one()
        if "MariaDB" not in version:
            pytest.skip("the plan check reads MariaDB's ANALYZE output")
        result = connection.exec_driver_sql(f"ANALYZE {compiled}", params)
        return [dict(row._mapping) for row in result]


def test_the_newest_n_are_read_through_the_index_and_nothing_else(
    filled: SQLAlchemyBackend, mysql_admin: Engine
) -> None:
    plan = _analyze(filled, mysql_admin, limit=20)
    table = filled.statements.table.name
    (step,) = [row for row in plan if row["table"] == table]
    assert step["key"] == f"{table}_session_idx"
    assert step["type"] in ("ref", "range")
    assert "filesort" not in (step["Extra"] or "")
    assert float(step["r_rows"]) == 20  # read 20 rows, not the session's 3,000
    # The outer ORDER BY sorts the 20 rows of the derived table, nothing more.
    (outer,) = [row for row in plan if row["table"] != table]
    assert float(outer["r_rows"]) == 20
    assert [r["data"]["content"] for r in filled.fetch("big", limit=3)] == [
        "2000-997", "2000-998", "2000-999"]
