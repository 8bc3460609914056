"""The PostgreSQL servers the tests use, their schema, and the skip-or-fail rule.

``CHATHISTORY_POSTGRES_URL`` names the server (default: the local one, user
``postgres``, database ``test``). The tests touch only what they create there:
a schema of their own, ``chathistory_test_<random>``, dropped at the end, and
roles and connections named per test. Tests that restart a server start a
PRIVATE cluster of their own (``private_postgres``: ``initdb`` and ``pg_ctl``,
on a free port, in a temporary directory removed afterwards).

If a server cannot be had, the tests that need it skip with the reason,
unless ``CHATHISTORY_REQUIRE_SERVICES=1``, which makes that a failure.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (CHATHISTORY_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server's URL, after checking it answers (skip or fail otherwise)."""
    url = os.environ.get("CHATHISTORY_POSTGRES_URL") or DEFAULT_URL
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL is not reachable at CHATHISTORY_POSTGRES_URL "
                     f"(or {DEFAULT_URL}): {str(exc).splitlines()[0]}")
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
def backend(postgres_url: str, postgres_schema: str, table_name: str
            ) -> Iterator[PostgresBackend]:
    """A backend on its own table, not yet created (tests that need it create it)."""
    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name)
    yield backend
    backend.close()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection, to look at what the backend wrote."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


class PrivateCluster:
    """A PostgreSQL cluster of this test alone: its URL, and a restart."""

    def __init__(self, bin_dir: Path, directory: Path, port: int, as_postgres: list[str]
                 ) -> None:
        self.directory = directory
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._pg_ctl = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(directory / "data"),
                        "-l", str(directory / "log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"]

    def pg_ctl(self, action: str, *options: str) -> None:
        subprocess.run([*self._pg_ctl, *options, action], check=True, capture_output=True,
                       timeout=120)

    def restart(self) -> None:
        """Stop the server (fast: it closes every connection) and start it again."""
        self.pg_ctl("restart", "-m", "fast")


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A fresh cluster on a free port in a temporary directory; stopped and removed after.

    Run as the ``postgres`` OS user when the tests run as root (initdb refuses root).
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(p) if (p := shutil.which("initdb")) else None)
    if initdb is None:
        _unavailable("a private PostgreSQL cluster needs initdb and pg_ctl")
    as_postgres: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="chathistory-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(directory, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = PrivateCluster(initdb.parent, directory, port, as_postgres)
    try:
        subprocess.run([*as_postgres, str(initdb), "-D", str(directory / "data"), "-U",
                        "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        cluster.pg_ctl("start")
        yield cluster
    finally:
        if (directory / "data" / "postmaster.pid").exists():
            cluster.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(directory, ignore_errors=True)
