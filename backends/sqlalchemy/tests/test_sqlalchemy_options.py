"""Options: URLs and their secrets, the application's engines, async drivers, lazy imports."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend, SQLAlchemyConfig
from chathistory_sqlalchemy.client import async_url_for
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from chathistory import (
    BackendUnavailableError,
    ConfigError,
    PermissionDeniedError,
    get_backend,
)
from chathistory.testing import numbered_records

SECRET = "hunter2-s3cret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_found_by_its_entry_point_name(sqlite_url: str) -> None:
    backend = get_backend("sqlalchemy", url=sqlite_url, table="chat")
    assert isinstance(backend, SQLAlchemyBackend)
    backend.close()


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"mysql+pymysql://app:{SECRET}@127.0.0.1:{_free_port()}/chat"
    backend = SQLAlchemyBackend.from_options(url=url, pool_timeout=2)
    config = SQLAlchemyConfig(url=url)
    with pytest.raises(BackendUnavailableError) as raised:
        backend.fetch("s")
    shown = [repr(backend), str(backend.config), repr(config), backend.client.server,
             str(raised.value), repr(raised.value.__cause__), caplog.text]
    assert not [text for text in shown if SECRET in text]
    assert "unavailable after 4 attempts" in str(raised.value)
    assert "app:***@127.0.0.1" in str(raised.value)


def test_a_url_that_does_not_parse_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL") as raised:
        SQLAlchemyBackend.from_options(url=f"not a url with {SECRET}")
    assert SECRET not in str(raised.value)


def test_a_refused_password_is_a_permission_error_and_never_retried(mysql_url: str) -> None:
    url = make_url(mysql_url).set(password=SECRET).render_as_string(hide_password=False)
    backend = SQLAlchemyBackend.from_options(url=url)
    with pytest.raises(PermissionDeniedError, match="Access denied") as raised:
        backend.create_collection()
    assert SECRET not in str(raised.value)
    assert "after" not in str(raised.value)
    backend.close()


@pytest.mark.parametrize(("url", "message"), [
    ("mysql+pymysql://root@127.0.0.1/test?charset=utf8", "charset=utf8mb4"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
    ("nosuchdialect://x/y", "Can't load plugin"),
])
def test_urls_that_cannot_work_are_refused_at_once(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SQLAlchemyBackend.from_options(url=url)


def test_mysql_urls_get_utf8mb4_and_async_urls_are_derived() -> None:
    backend = SQLAlchemyBackend.from_options(url="mysql+pymysql://u:p@db/chat")
    assert backend.client.server == "mysql+pymysql://u:***@db/chat?charset=utf8mb4"
    assert backend.client.async_url is not None
    assert backend.client.async_url.drivername == "mysql+aiomysql"
    assert backend.client.async_url.query["charset"] == "utf8mb4"
    assert async_url_for(make_url("sqlite:///x.db")) == make_url("sqlite+aiosqlite:///x.db")
    assert async_url_for(make_url("mariadb+pymysql://h/d")).drivername == "mariadb+aiomysql"
    assert async_url_for(make_url("mssql+pyodbc://h/d")) is None  # no async driver: threads


@pytest.mark.parametrize(("options", "message"), [
    ({}, "give url"),
    ({"url": "sqlite:///a.db", "engine": "x"}, "either url or engine"),
    ({"engine": "not an engine"}, "sqlalchemy.engine.Engine"),
    ({"async_engine": 3}, "AsyncEngine"),
    ({"url": "sqlite:///a.db", "pool_size": 0}, "pool_size"),
    ({"url": "sqlite:///a.db", "layout": "orm"}, "layout"),
    ({"url": "sqlite:///a.db", "tabel": "x"}, "unknown option 'tabel'"),
])
def test_bad_options_name_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_backend("sqlalchemy", **options)


def test_the_applications_engines_are_used_and_left_open(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")

    async def scenario() -> list[str]:
        async_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
        backend = SQLAlchemyBackend.from_options(engine=engine, async_engine=async_engine)
        assert backend.client.native_async
        await backend.acreate_collection()
        await backend.aappend("s", numbered_records(2))
        await backend.aclose()
        contents = [r["data"]["content"] for r in await backend.afetch("s")]  # still open
        await async_engine.dispose()
        return contents

    assert asyncio.run(scenario()) == ["m0", "m1"]
    backend = SQLAlchemyBackend.from_options(engine=engine)
    backend.close()
    assert len(backend.fetch("s")) == 2
    engine.dispose()


def test_only_an_async_engine_makes_sync_calls_a_config_error(tmp_path: Path) -> None:
    async_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    backend = SQLAlchemyBackend.from_options(async_engine=async_engine)
    with pytest.raises(ConfigError, match="only an async_engine"):
        backend.fetch("s")


def test_one_backend_serves_several_event_loops_in_turn(sqlite_url: str) -> None:
    backend = SQLAlchemyBackend.from_options(url=sqlite_url)
    backend.create_collection()
    for number in range(3):
        asyncio.run(backend.aappend("s", numbered_records(1, prefix=f"loop{number}-")))
    assert [r["data"]["content"] for r in asyncio.run(backend.afetch("s"))] == [
        "loop0-0", "loop1-0", "loop2-0"]
    backend.close()


def test_importing_the_package_and_plugin_loads_no_sqlalchemy() -> None:
    code = ("import sys, chathistory_sqlalchemy, chathistory_sqlalchemy.plugin, "
            "chathistory_sqlalchemy.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'pymysql', 'aiomysql', 'aiosqlite')))")
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.strip()
    assert output == "[]"


def test_new_pymysql_connections_do_not_each_build_an_ssl_context(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyMySQL's default builds one per connection (about 50 ms here); reconnects reuse
    what the first connection learnt (this server offers no TLS: ssl_disabled)."""
    built: list[object] = []
    create_default_context = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        built.append(args)
        return create_default_context(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    backend = SQLAlchemyBackend.from_options(url=mysql_url, native_async=False)
    engine = backend.client.engine()
    for _ in range(4):
        engine.dispose()  # the next call opens a new connection
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    assert len(built) == 1  # PyMySQL's own, for the first connection
    backend.close()


def test_a_write_costs_no_rollback_after_its_commit(mysql_url: str, mysql_table: str) -> None:
    """The pool sends no ROLLBACK when a write's connection comes back committed."""
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table, pool_size=1,
                                             max_overflow=0, pool_pre_ping=False)
    backend.create_collection()

    def rollbacks() -> int:  # of the one pooled connection; this read's close adds one
        with backend.client.engine().connect() as connection:
            return int(connection.execute(
                text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()[1])

    before = rollbacks()
    for number in range(5):
        backend.append("s", numbered_records(1, prefix=f"{number}-"))
    backend.clear("other")
    assert rollbacks() == before + 1
    assert len(backend.fetch("s")) == 5
    backend.close()
