"""The databases the tests use, their tables, and the skip-or-fail rule.

SQLite tests use a file in the test's temporary directory. MariaDB/MySQL
tests use the server of ``CHATHISTORY_MYSQL_URL`` (default: the local one,
user ``root`` with no password, database ``test``) and touch only tables
named ``chh_<random>`` (and ``chh_<random>_migrations`` and ``chh_<random>_sessions``),
which they drop at the end. The few tests of a
dialect this backend has no listing index for use PostgreSQL, the server of
``CHATHISTORY_POSTGRES_URL`` (default: the local one, user ``postgres``,
database ``test``), in the same way.

If the server cannot be reached, the tests that need it skip with the reason,
unless ``CHATHISTORY_REQUIRE_SERVICES=1``, which makes that a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import URL, Engine, create_engine, exc, make_url, text

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (CHATHISTORY_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def _answering_engine(url: URL, server: str, variable: str, default: str) -> Engine:
    """A small engine on ``url`` once the server has answered; otherwise skip (or fail)."""
    engine = create_engine(url, pool_size=2, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except exc.DBAPIError as error:
        engine.dispose()
        _unavailable(f"{server} is not reachable at {variable} (or {default}): "
                     f"{str(error.orig).splitlines()[0]}")
    return engine


@pytest.fixture(scope="session")
def mysql_admin() -> Iterator[Engine]:
    """An engine on the MariaDB/MySQL server, after checking it answers (skip or fail)."""
    url = make_url(os.environ.get("CHATHISTORY_MYSQL_URL") or DEFAULT_MYSQL_URL)
    engine = _answering_engine(url, "MariaDB/MySQL", "CHATHISTORY_MYSQL_URL", DEFAULT_MYSQL_URL)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def mysql_url(mysql_admin: Engine) -> str:
    """The server's URL, password included (it is a test server)."""
    return mysql_admin.url.render_as_string(hide_password=False)


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses."""
    return f"chh_{secrets.token_hex(6)}"


@pytest.fixture
def mysql_table(mysql_admin: Engine, table_name: str) -> Iterator[str]:
    """``table_name``, dropped from the server after the test (with its versions' table)."""
    yield table_name
    with mysql_admin.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS `{table_name}`, "
                                f"`{table_name}_migrations`, `{table_name}_sessions`"))


@pytest.fixture(params=["chathistory", "langchain_community"])
def mariadb_backend(request: pytest.FixtureRequest, mysql_url: str, mysql_table: str
                    ) -> Iterator[SQLAlchemyBackend]:
    """A backend on a private MariaDB table, in each layout, its table created."""
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                             layout=request.param)
    backend.create_collection()
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An engine on the PostgreSQL server (psycopg), after checking it answers."""
    url = make_url(os.environ.get("CHATHISTORY_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    engine = _answering_engine(url.set(drivername="postgresql+psycopg"), "PostgreSQL",
                               "CHATHISTORY_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_table(postgres_admin: Engine, table_name: str) -> Iterator[str]:
    """``table_name`` on PostgreSQL, dropped after the test (with its versions' table)."""
    yield table_name
    with postgres_admin.begin() as connection:
        connection.execute(text(f'DROP TABLE IF EXISTS "{table_name}", '
                                f'"{table_name}_migrations", "{table_name}_sessions"'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chat.db'}"
