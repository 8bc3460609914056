"""The conformance suite through this backend, on MariaDB, SQLite and PostgreSQL, in both
layouts.

The session catalog's tests (``CatalogContract``) run on every ``chathistory``
layout class; the ``langchain_community`` classes skip them, saying why: that
layout declares no catalog (the peer's class writes the table too).

The classes with native async run every test under blockbuster: a call that
blocks the event loop (a socket read, a file write, a sleep) fails the test.
Reads must create nothing: on MariaDB the store is the test's tables (its
table's name and the never-created one's, and their versions' tables); on
SQLite, the files under the test's directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from blockbuster import blockbuster_ctx
from chathistory_sqlalchemy import SQLAlchemyBackend
from sqlalchemy import Engine, create_engine, inspect, text

from chathistory.testing import BackendContract


@pytest.fixture
def loop_never_blocks() -> Iterator[None]:
    with blockbuster_ctx():
        yield


def _created(backend: SQLAlchemyBackend) -> SQLAlchemyBackend:
    backend.create_collection()
    return backend


class OnMariaDB(BackendContract):
    """Where reads could create something on the server: the tables named after the test's."""

    layout = "chathistory"

    @pytest.fixture
    def store_snapshot(self, mysql_admin: Engine, mysql_table: str) -> Callable[[], object]:
        return lambda: sorted(name for name in inspect(mysql_admin).get_table_names()
                              if name.startswith(mysql_table))

    @pytest.fixture
    def uncreated_backend(self, mysql_url: str, mysql_table: str, mysql_admin: Engine
                          ) -> Iterator[SQLAlchemyBackend]:
        yield SQLAlchemyBackend.from_options(url=mysql_url, table=f"{mysql_table}_never",
                                             layout=self.layout)
        with mysql_admin.begin() as connection:  # were it made after all
            connection.execute(text(f"DROP TABLE IF EXISTS `{mysql_table}_never`, "
                                    f"`{mysql_table}_never_migrations`, "
                                    f"`{mysql_table}_never_sessions`"))


class OnSQLite(BackendContract):
    layout = "chathistory"

    @pytest.fixture
    def uncreated_backend(self, tmp_path: Path) -> SQLAlchemyBackend:
        return SQLAlchemyBackend.from_options(url=f"sqlite:///{tmp_path / 'never.db'}",
                                              layout=self.layout)


class TestOnMariaDB(OnMariaDB):
    @pytest.fixture
    def backend(self, mysql_url: str, mysql_table: str, loop_never_blocks: None
                ) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table))
        assert backend.client.native_async
        yield backend
        backend.close()


class TestOnMariaDBLangchainLayout(OnMariaDB):
    layout = "langchain_community"

    @pytest.fixture
    def backend(self, mysql_url: str, mysql_table: str, loop_never_blocks: None
                ) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(
            url=mysql_url, table=mysql_table, layout="langchain_community"))
        yield backend
        backend.close()


class TestOnMariaDBWithTheApplicationsEngine(OnMariaDB):
    """An app's own Engine: used as given, never disposed; async twins run in threads."""

    @pytest.fixture
    def backend(self, mysql_url: str, mysql_table: str) -> Iterator[SQLAlchemyBackend]:
        engine: Engine = create_engine(mysql_url, pool_size=8)
        backend = _created(SQLAlchemyBackend.from_options(engine=engine, table=mysql_table))
        assert not backend.client.native_async
        yield backend
        backend.close()
        engine.dispose()


class TestOnSQLite(OnSQLite):
    @pytest.fixture
    def backend(self, sqlite_url: str, loop_never_blocks: None) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=sqlite_url))
        assert backend.client.native_async
        yield backend
        backend.close()


class TestOnSQLiteLangchainLayout(OnSQLite):
    layout = "langchain_community"

    @pytest.fixture
    def backend(self, sqlite_url: str, loop_never_blocks: None) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=sqlite_url,
                                                          layout="langchain_community"))
        yield backend
        backend.close()


class TestOnSQLiteWithThreadsForAsync(OnSQLite):
    """native_async=False: the async twins are BaseBackend's, in worker threads."""

    @pytest.fixture
    def backend(self, sqlite_url: str) -> Iterator[SQLAlchemyBackend]:
        backend = _created(SQLAlchemyBackend.from_options(url=sqlite_url, native_async=False))
        assert not backend.client.native_async
        yield backend
        backend.close()


class OnPostgreSQL(BackendContract):
    layout = "chathistory"

    @pytest.fixture
    def make_session_id(self) -> Callable[[str], str]:
        return str

    @pytest.fixture
    def backend(self, postgres_admin: Engine, postgres_table: str
                ) -> Iterator[SQLAlchemyBackend]:
        url = postgres_admin.url.render_as_string(hide_password=False)
        backend = _created(SQLAlchemyBackend.from_options(url=url, table=postgres_table,
                                                          layout=self.layout))
        yield backend
        backend.close()


class TestOnPostgreSQL(OnPostgreSQL):
    """The whole suite on PostgreSQL too: its writers of one session take the entry's row
    lock (this layout keeps the catalog) before their rows get ids, so a batch stays whole."""


class TestOnPostgreSQLLangchainLayout(OnPostgreSQL):
    """SQLChatMessageHistory's table on PostgreSQL: no catalog, the advisory locks."""

    layout = "langchain_community"
