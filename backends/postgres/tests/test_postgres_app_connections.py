"""Connections and pools the application owns: used as they are, never closed by us."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from chathistory import BackendUnavailableError, get_backend
from chathistory.testing import BackendContract, numbered_records


def _contents(records: list[dict[str, Any]]) -> list[str]:
    return [record["data"]["content"] for record in records]


def _count(admin: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = admin.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(schema, table))).fetchone()
    assert row is not None
    return int(row[0])


class TestOnAnAppPool(BackendContract):
    """The whole suite, the sync methods on a pool the application opened."""

    @pytest.fixture
    def backend(self, postgres_url: str, postgres_schema: str, table_name: str
                ) -> Iterator[PostgresBackend]:
        # Not autocommit, default prepare threshold: the app's settings, not ours.
        pool: ConnectionPool[Any] = ConnectionPool(postgres_url, min_size=1, max_size=8,
                                                   open=True)
        backend = PostgresBackend.from_options(
            pool=pool, conninfo=postgres_url, schema=postgres_schema, table=table_name)
        backend.create_collection()
        yield backend
        backend.close()
        assert not pool.closed, "close() must leave the application's pool open"
        pool.close()


def test_an_app_connection_outside_a_transaction_is_committed(
    postgres_url: str, postgres_schema: str, table_name: str, admin: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(postgres_url) as connection:  # not autocommit
        backend = get_backend("postgres", connection=connection, schema=postgres_schema,
                              table=table_name)
        backend.create_collection()
        backend.append("s", numbered_records(3))
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert _count(admin, postgres_schema, table_name) == 3
        assert _contents(backend.fetch("s", limit=2)) == ["m1", "m2"]
        backend.close()
        assert not connection.closed


def test_inside_the_apps_transaction_the_app_decides(
    postgres_url: str, postgres_schema: str, table_name: str, admin: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(postgres_url) as connection:
        backend = get_backend("postgres", connection=connection, schema=postgres_schema,
                              table=table_name)
        backend.create_collection()
        connection.execute("SELECT 1")  # the app opens a transaction
        backend.append("s", numbered_records(2))
        assert _contents(backend.fetch("s")) == ["m0", "m1"]  # seen inside it
        assert _count(admin, postgres_schema, table_name) == 0  # not yet outside
        connection.rollback()
        assert backend.fetch("s") == []
        connection.execute("SELECT 1")
        backend.append("s", numbered_records(1))
        connection.commit()
        assert _count(admin, postgres_schema, table_name) == 1


def test_a_closed_app_connection_is_unavailable_not_reopened(
    postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    connection = psycopg.connect(postgres_url, autocommit=True)
    backend = get_backend("postgres", connection=connection, schema=postgres_schema,
                          table=table_name)
    backend.create_collection()
    connection.close()
    with pytest.raises(BackendUnavailableError, match="application's connection"):
        backend.fetch("s")


def test_app_async_connection_and_sync_connection_together(
    postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(postgres_url) as aconnection:
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                backend = get_backend("postgres", connection=connection,
                                      async_connection=aconnection,
                                      schema=postgres_schema, table=table_name)
                await backend.acreate_collection()
                await asyncio.gather(*(
                    backend.aappend("both", numbered_records(2, prefix=f"t{task}-"))
                    for task in range(4)))
                assert len(backend.fetch("both")) == 8  # written async, read sync
                assert len(await backend.afetch("both", limit=3)) == 3
                await backend.aclose()
                backend.close()
                assert not aconnection.closed
                assert not connection.closed

    asyncio.run(scenario())


def test_app_async_pool_is_used_and_left_open(
    postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    async def scenario() -> None:
        async with AsyncConnectionPool(postgres_url, min_size=1, max_size=4,
                                       open=False) as pool:
            backend = get_backend("postgres", async_pool=pool, conninfo=postgres_url,
                                  schema=postgres_schema, table=table_name)
            await backend.acreate_collection()
            await backend.aappend("s", numbered_records(3))
            assert _contents(await backend.afetch("s", limit=1)) == ["m2"]
            assert pool.get_stats().get("requests_num", 0) >= 3
            await backend.aclose()
            assert not pool.closed
            # The sync methods use the backend's own pool, from conninfo.
            assert _contents(backend.fetch("s")) == ["m0", "m1", "m2"]
            backend.close()

    asyncio.run(scenario())


def test_without_an_async_source_the_async_twins_use_threads(
    postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        backend = get_backend("postgres", connection=connection, schema=postgres_schema,
                              table=table_name)
        backend.create_collection()

        async def scenario() -> list[dict[str, Any]]:
            await backend.aappend("s", numbered_records(2))
            return await backend.afetch("s")

        assert _contents(asyncio.run(scenario())) == ["m0", "m1"]
