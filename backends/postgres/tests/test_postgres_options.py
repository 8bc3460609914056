"""Options: names that reach SQL, secrets, the entry point and the fake swap."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from chathistory_postgres import PostgresBackend, PostgresConfig
from chathistory_postgres.errors import is_transient
from psycopg.conninfo import conninfo_to_dict

from chathistory import (
    BackendUnavailableError,
    ChatHistory,
    ChatHistoryError,
    ConfigError,
    PermissionDeniedError,
    available_backends,
    backend_class,
    get_backend,
)
from chathistory.testing import fake_backends, numbered_records

# Nothing listens on port 1: any attempt to connect fails at once.
NOWHERE = "postgresql://postgres@127.0.0.1:1/test"
PASSWORD = "s3cr3t-Pa55w0rd"


@pytest.mark.parametrize("name", [
    'chat"; DROP TABLE users; --',
    "chat;drop",
    'quo"te',
    "with space",
    "dash-ed",
    "dot.ted",
    "1starts_with_digit",
    "",
    "ünïcode",
    "x" * 49,
])
def test_rejected_table_names_fail_before_any_connection(name: str) -> None:
    # A connection to NOWHERE would fail with BackendUnavailableError, not ConfigError.
    with pytest.raises(ConfigError, match="'table'"):
        get_backend("postgres", conninfo=NOWHERE, table=name)


@pytest.mark.parametrize("name", ['pub"lic', "a;b", "x" * 64, "", "sch ema"])
def test_rejected_schema_names_fail_before_any_connection(name: str) -> None:
    with pytest.raises(ConfigError, match="'schema'"):
        get_backend("postgres", conninfo=NOWHERE, schema=name)


def test_longest_accepted_names() -> None:
    backend = get_backend("postgres", conninfo=NOWHERE, schema="s" * 63, table="t" * 48)
    assert backend.config.db_schema == "s" * 63  # type: ignore[attr-defined]


@pytest.mark.parametrize(("options", "message"), [
    ({}, "^backend 'postgres': option 'conninfo' is required "),
    ({"conninfo": NOWHERE, "min_size": 5, "max_size": 2}, "max_size"),
    ({"conninfo": NOWHERE, "layout": "sqlalchemy"}, "'layout'"),
    ({"conninfo": NOWHERE, "timeout": 0}, "'timeout'"),
    ({"conninfo": NOWHERE, "tabel": "x"}, "unknown option 'tabel'"),
    ({"conninfo": NOWHERE, "synchronous_commit": "maybe"}, "'synchronous_commit'"),
])
def test_bad_options_name_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        get_backend("postgres", **options)
    assert "'postgres'" in str(caught.value)


def test_app_objects_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"psycopg\.Connection"):
        get_backend("postgres", connection="postgresql://not-a-connection")
    with pytest.raises(ConfigError, match="AsyncConnectionPool"):
        get_backend("postgres", async_pool=object())


@pytest.mark.parametrize("conninfo", [
    f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
    f"host=127.0.0.1 port=1 dbname=test user=postgres password={PASSWORD}",
])
def test_the_password_is_in_no_repr_and_no_error(conninfo: str) -> None:
    backend = get_backend("postgres", conninfo=conninfo)
    assert PASSWORD not in repr(backend)
    assert PASSWORD not in repr(backend.config)  # type: ignore[attr-defined]
    assert PASSWORD not in str(backend.config)  # type: ignore[attr-defined]
    for call in (backend.create_collection, lambda: backend.fetch("s"),
                 lambda: backend.append("s", [{"type": "human", "data": {}}])):
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        error: BaseException | None = caught.value
        while error is not None:  # the whole chain, as a traceback would show it
            assert PASSWORD not in str(error)
            assert "127.0.0.1:1/test" in str(caught.value)
            error = error.__cause__
    backend.close()


def test_a_malformed_conninfo_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError, match="'conninfo'") as caught:
        get_backend("postgres", conninfo=f"postgresql://u:{PASSWORD}@[broken")
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_wrong_option_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        get_backend("postgres", conninfo=NOWHERE, table=f"x;{PASSWORD}")
    assert PASSWORD not in str(caught.value)


def test_a_refused_login_is_permission_denied_and_not_retried(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://postgres", "postgresql://no_such_role_4242", 1)
    assert url != postgres_url, "CHATHISTORY_POSTGRES_URL must name the user postgres"
    backend = get_backend("postgres", conninfo=url.replace("@", f":{PASSWORD}@", 1))
    for call in (lambda: backend.fetch("s"),
                 lambda: asyncio.run(backend.afetch("s"))):  # type: ignore[attr-defined]
        # Raised as itself: a retried error would end as "unavailable after 4 attempts".
        with pytest.raises(PermissionDeniedError, match="refused the login") as caught:
            call()
        assert PASSWORD not in str(caught.value)
        assert not is_transient(caught.value)
    backend.close()


def test_an_empty_conninfo_is_libpqs_defaults_and_environment(
        postgres_url: str, postgres_schema: str, table_name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE",
                 "password": "PGPASSWORD"}
    for key, value in conninfo_to_dict(postgres_url).items():
        monkeypatch.setenv(variables[key], str(value))
    backend = get_backend("postgres", conninfo="", schema=postgres_schema, table=table_name)
    backend.create_collection()
    backend.append("empty-conninfo", numbered_records(2))
    assert backend.fetch("empty-conninfo") == numbered_records(2)
    assert asyncio.run(backend.afetch("empty-conninfo")) == numbered_records(2)  # type: ignore[attr-defined]
    backend.close()


def test_registered_through_the_entry_point(postgres_url: str, postgres_schema: str,
                                            table_name: str) -> None:
    (info,) = [info for info in available_backends() if info.name == "postgres"]
    assert info.distribution == "chathistory-postgres"
    assert info.error is None
    assert backend_class("postgres") is PostgresBackend
    backend = get_backend("postgres", conninfo=postgres_url, schema=postgres_schema,
                          table=table_name)
    assert isinstance(backend, PostgresBackend)
    with ChatHistory("entry-point", backend=backend) as history:
        history.add_user_message("hello")
        assert [message.content for message in history.messages] == ["hello"]
    backend.close()


def test_fake_swap_keeps_the_option_checks() -> None:
    with fake_backends("postgres") as fakes:
        history = ChatHistory("s1", backend="postgres", conninfo=NOWHERE, table="chat")
        history.add_user_message("hi")
        assert fakes["postgres"].fetch("s1")[0]["data"]["content"] == "hi"
        with pytest.raises(ConfigError, match="'table'"):
            ChatHistory("s1", backend="postgres", conninfo=NOWHERE, table="bad;name")
        with pytest.raises(ConfigError, match="unknown option 'conn_info'"):
            ChatHistory("s1", backend="postgres", conn_info=NOWHERE)


def test_options_are_validated_without_importing_psycopg() -> None:
    script = textwrap.dedent("""
        import sys
        from chathistory import ChatHistory
        from chathistory.testing import fake_backends, numbered_records
        with fake_backends("postgres"):
            ChatHistory("s", backend="postgres", conninfo="postgresql://h/db").add_user_message("x")
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in
                        ("psycopg", "psycopg_pool"))
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_config_is_the_backends_config() -> None:
    assert PostgresBackend.Config is PostgresConfig
    config = PostgresConfig(conninfo=NOWHERE, schema="app")  # type: ignore[arg-type]
    assert config.db_schema == "app"
    assert PostgresConfig(conninfo=NOWHERE, db_schema="app").db_schema == "app"  # type: ignore[arg-type]


def test_sync_calls_need_a_sync_source() -> None:
    from psycopg_pool import AsyncConnectionPool

    pool: AsyncConnectionPool = AsyncConnectionPool(NOWHERE, open=False)
    backend = get_backend("postgres", async_pool=pool)
    with pytest.raises(ChatHistoryError, match="only async connections"):
        backend.fetch("s")
