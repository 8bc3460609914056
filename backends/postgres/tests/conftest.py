"""The PostgreSQL server the tests use, their schema, and the skip-or-fail rule.

``CHATHISTORY_POSTGRES_URL`` names the server (default: the local one, user
``postgres``, database ``test``). Each test session works in a schema of its
own, ``chathistory_test_<random>``, dropped at the end. If the server cannot be
reached the tests that need it skip with the reason, unless
``CHATHISTORY_REQUIRE_SERVICES=1``, which makes that a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESTART_MARK = "restarts_server"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{RESTART_MARK}: restarts the PostgreSQL server; runs after every other test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A restart would disturb any test that talks to the server meanwhile: run it last.
    restarting = [item for item in items if item.get_closest_marker(RESTART_MARK)]
    if restarting:
        items[:] = [item for item in items if item not in restarting] + restarting


def _required() -> bool:
    return os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server's URL, after checking it answers (skip or fail otherwise)."""
    url = os.environ.get("CHATHISTORY_POSTGRES_URL") or DEFAULT_URL
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = (f"PostgreSQL is not reachable at CHATHISTORY_POSTGRES_URL "
                  f"(or {DEFAULT_URL}): {str(exc).splitlines()[0]}")
        if _required():
            pytest.fail(f"{reason} (CHATHISTORY_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema for this test session only, dropped with everything in it at the end."""
    schema = f"chathistory_test_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses."""
    return f"t_{secrets.token_hex(6)}"


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection, to look at what the backend wrote."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection
