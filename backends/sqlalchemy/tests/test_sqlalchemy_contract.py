"""The conformance suite through this backend, on MariaDB and on SQLite, in both layouts.

The classes with native async run every test under blockbuster: a call that
blocks the event loop (a socket read, a file write, a sleep) fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import blockbuster_ctx
from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import Engine, create_engine

from chathistory.testing import BackendContract


@pytest.fixture
def loop_never_blocks() -> Iterator[None]:
    with blockbuster_ctx():
        yield


def _created(backend: SQLAlchemyBackend) -> SQLAlchemyBackend:
    backend.create_collection()
    return backend


class TestOnMariaDB(BackendContract):
    @pytest.fixture
    def backend(self, mysql_url: str, mysql_table: str, loop_never_blocks: None
                ) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table))
        assert backend.client.has_async
        yield backend
        backend.close()


class TestOnMariaDBLangchainLayout(BackendContract):
    @pytest.fixture
    def backend(self, mysql_url: str, mysql_table: str, loop_never_blocks: None
                ) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(
            url=mysql_url, table=mysql_table, layout="langchain_community"))
        yield backend
        backend.close()


class TestOnMariaDBWithTheApplicationsEngine(BackendContract):
    """An app's own Engine: used as given, never disposed; async twins run in threads."""

    @pytest.fixture
    def backend(self, mysql_url: str, mysql_table: str) -> Iterator[SQLAlchemyBackend]:
        engine: Engine = create_engine(mysql_url, pool_size=8)
        backend = _created(SQLAlchemyBackend.from_options(engine=engine, table=mysql_table))
        assert not backend.client.has_async
        yield backend
        backend.close()
        engine.dispose()


class TestOnSQLite(BackendContract):
    @pytest.fixture
    def backend(self, sqlite_url: str, loop_never_blocks: None) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=sqlite_url))
        assert backend.client.has_async
        yield backend
        backend.close()


class TestOnSQLiteLangchainLayout(BackendContract):
    @pytest.fixture
    def backend(self, sqlite_url: str, loop_never_blocks: None) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=sqlite_url,
                                                          layout="langchain_community"))
        yield backend
        backend.close()


class TestOnSQLiteWithThreadsForAsync(BackendContract):
    """native_async=False: the async twins are BaseBackend's, in worker threads."""

    @pytest.fixture
    def backend(self, sqlite_url: str) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=sqlite_url, native_async=False))
        assert not backend.client.has_async
        yield backend
        backend.close()
