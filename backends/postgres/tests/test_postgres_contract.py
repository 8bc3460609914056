"""The conformance suite on the real server, sync and native async, in every layout."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from chathistory_postgres import PostgresBackend

from chathistory.testing import BackendContract, MakeSessionId


class TestPostgresBackend(BackendContract):
    @pytest.fixture
    def backend(self, postgres_url: str, postgres_schema: str, table_name: str
                ) -> Iterator[PostgresBackend]:
        backend = PostgresBackend.from_options(
            conninfo=postgres_url, schema=postgres_schema, table=table_name, max_size=8)
        backend.create_collection()
        yield backend
        backend.close()


class TestPostgresBackendWithoutPreparedStatements(BackendContract):
    """The PgBouncer-friendly setting passes the same suite."""

    @pytest.fixture
    def backend(self, postgres_url: str, postgres_schema: str, table_name: str
                ) -> Iterator[PostgresBackend]:
        backend = PostgresBackend.from_options(
            conninfo=postgres_url, schema=postgres_schema, table=table_name,
            prepared_statements=False, min_size=0, max_size=8)
        backend.create_collection()
        yield backend
        backend.close()


class TestLangchainPostgresLayout(BackendContract):
    """A langchain-postgres table in place: its session ids are UUIDs, so the suite's are too."""

    @pytest.fixture
    def make_session_id(self) -> MakeSessionId:
        return lambda name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"chathistory-test:{name}"))

    @pytest.fixture
    def holds_nul(self) -> bool:
        return False  # their message column holds jsonb objects, and jsonb has no NUL

    @pytest.fixture
    def backend(self, postgres_url: str, postgres_schema: str, table_name: str
                ) -> Iterator[PostgresBackend]:
        backend = PostgresBackend.from_options(
            conninfo=postgres_url, schema=postgres_schema, table=table_name,
            layout="langchain_postgres", max_size=8)
        backend.create_collection()
        yield backend
        backend.close()
