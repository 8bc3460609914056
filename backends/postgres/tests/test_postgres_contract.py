"""The conformance suite on the real server, sync and native async, in every layout."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import psycopg
import pytest
from chathistory_postgres import PostgresBackend

from chathistory.testing import BackendContract, MakeSessionId


class OnTheServer(BackendContract):
    """Each class's backend, and what reads must not create: relations in its schema,
    and a schema of an ``uncreated_backend`` that must stay missing."""

    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def backend(self, postgres_url: str, postgres_schema: str, table_name: str
                ) -> Iterator[PostgresBackend]:
        backend = PostgresBackend.from_options(
            conninfo=postgres_url, schema=postgres_schema, table=table_name, **self.options)
        backend.create_collection()
        yield backend
        backend.close()

    @pytest.fixture
    def never_created(self) -> str:
        return f"chathistory_never_{secrets.token_hex(4)}"

    @pytest.fixture
    def uncreated_backend(self, postgres_url: str, never_created: str, table_name: str
                          ) -> PostgresBackend:
        return PostgresBackend.from_options(
            conninfo=postgres_url, schema=never_created, table=table_name, **self.options)

    @pytest.fixture
    def store_snapshot(self, admin: psycopg.Connection[Any], postgres_schema: str,
                       never_created: str) -> Callable[[], list[str]]:
        def relations() -> list[str]:
            return [name for (name,) in admin.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = %s UNION ALL "
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname IN (%s, %s) ORDER BY 1",
                (never_created, postgres_schema, never_created)).fetchall()]

        return relations


class TestPostgresBackend(OnTheServer):
    options: ClassVar[dict[str, Any]] = {"max_size": 8}


class TestPostgresBackendWithoutPreparedStatements(OnTheServer):
    """The PgBouncer-friendly setting passes the same suite."""

    options: ClassVar[dict[str, Any]] = {
        "prepared_statements": False, "min_size": 0, "max_size": 8}


class TestLangchainPostgresLayout(OnTheServer):
    """A langchain-postgres table in place: its session ids are UUIDs, so the suite's are too."""

    options: ClassVar[dict[str, Any]] = {"layout": "langchain_postgres", "max_size": 8}

    @pytest.fixture
    def make_session_id(self) -> MakeSessionId:
        return lambda name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"chathistory-test:{name}"))

    @pytest.fixture
    def holds_nul(self) -> bool:
        return False  # their message column holds jsonb objects, and jsonb has no NUL
