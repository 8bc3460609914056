"""The conformance suite on the real server, sync and native async.

The langchain_postgres layout cannot run it (its session ids must be UUIDs):
test_postgres_langchain.py covers that layout.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chathistory_postgres import PostgresBackend

from chathistory.testing import BackendContract


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
