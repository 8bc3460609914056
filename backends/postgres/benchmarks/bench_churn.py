"""Connection churn on PostgreSQL: the same writers without kills, with kills, across a restart.

The phases, writers and checks are ``chathistory.testing.churn``'s (steady,
kills, restart; 4 processes x (4 threads + 2 async tasks), each writer
appending ``--batches`` numbered batches to its own session). This script
brings a PRIVATE cluster (``initdb``/``pg_ctl`` on a free port, in a temporary
directory removed at the end; never the server of the tests), a table per
phase, and its faults: an admin connection terminates ``--kill-share`` of the
writers' connections (10% by default, at least one) every 20-100 ms
(``pg_terminate_backend``), and the restart is ``pg_ctl stop -m immediate``,
3 s down. The backend's pool ``timeout`` is 10 s.

    .venv/bin/python backends/postgres/benchmarks/bench_churn.py [--batches 1000] [--raw]

``--raw`` runs each phase a second time with the floor: psycopg alone, one
connection per writer, reopened at once when it fails. Each phase gives up
after ``--deadline`` seconds (and says so).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from chathistory import BackendUnavailableError, get_backend
from chathistory.testing import churn

TIMEOUT = 10.0  # the backend's default pool timeout, given explicitly
APPLICATION = "chathistory-postgres"  # the writers' connections' name, for the killer


class PrivateServer:
    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        if initdb is None:
            raise SystemExit("bench_churn needs initdb and pg_ctl (PostgreSQL's server binaries)")
        self.bin = Path(initdb).parent
        self.directory = Path(tempfile.mkdtemp(prefix="chathistory-churn-"))
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres", "postgres")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.admin: psycopg.Connection[Any] | None = None
        subprocess.run([*self.as_postgres, str(self.bin / "initdb"), "-D", self.data, "-U",
                        "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)

    @property
    def data(self) -> str:
        return str(self.directory / "data")

    def pg_ctl(self, action: str, *options: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", self.data, "-l",
             str(self.directory / "log"), "-w", "-t", "60", "-o",
             f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
             "-c max_connections=200 -c fsync=off", *options, action],
            check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.pg_ctl("start")

    def crash(self) -> None:
        self.pg_ctl("stop", "-m", "immediate")

    def prepare(self, target: str) -> None:
        creator = get_backend("postgres", conninfo=self.url, table=target)
        creator.create_collection()
        creator.close()

    def kill_connections(self, share: float) -> int:
        try:
            self.admin = self.admin or psycopg.connect(
                self.url, autocommit=True, application_name="bench-admin")
            return sum(killed for (killed,) in self.admin.execute(
                "SELECT pg_terminate_backend(pid) FROM (SELECT pid, random() AS draw, "
                "row_number() OVER (ORDER BY random()) AS position FROM pg_stat_activity "
                "WHERE application_name = %s) AS c WHERE draw < %s OR position = 1",
                (APPLICATION, share)).fetchall())
        except psycopg.OperationalError:
            self.admin = None
            return 0

    def stored(self, target: str, sessions: Sequence[str]) -> Mapping[str, Sequence[str]]:
        with psycopg.connect(self.url, autocommit=True) as admin:
            rows = admin.execute(
                f'SELECT session_id, message -> \'data\' ->> \'content\' FROM "{target}" '
                "WHERE session_id = ANY(%s) ORDER BY id", (list(sessions),)).fetchall()
        stored: dict[str, list[str]] = {}
        for session, content in rows:
            stored.setdefault(session, []).append(content)
        return stored

    def remove(self) -> None:
        if self.admin is not None:
            self.admin.close()
        if (self.directory / "data" / "postmaster.pid").exists():
            self.crash()
        shutil.rmtree(self.directory, ignore_errors=True)


class RawWriters:
    """The floor: psycopg alone, a connection per writer, reopened at once when it fails.

    The same statements' shape as the backend's append and fetch, the same
    error as the backend's for a lost connection, and no pool, no retry wait.
    """

    INSERT = ("INSERT INTO {} (session_id, message) SELECT %s, m.message "
              "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS m(message, position) "
              "ORDER BY m.position")
    NEWEST = ("SELECT message::text FROM (SELECT id, message FROM {} WHERE session_id = %s "
              "ORDER BY id DESC LIMIT %s) AS newest ORDER BY id")

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url, f'"{table}"'
        self.connections: dict[str, psycopg.Connection[Any]] = {}
        self.aconnections: dict[str, psycopg.AsyncConnection[Any]] = {}

    def _run(self, session: str, query: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            connection = self.connections.get(session)
            if connection is None or connection.closed:
                connection = self.connections[session] = psycopg.connect(
                    self.url, autocommit=True, application_name=APPLICATION)
            cursor = connection.execute(query.format(self.table), params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as error:
            self.connections.pop(session, None)
            raise BackendUnavailableError(str(error).strip()) from error

    async def _arun(self, session: str, query: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            connection = self.aconnections.get(session)
            if connection is None or connection.closed:
                connection = self.aconnections[session] = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name=APPLICATION)
            cursor = await connection.execute(query.format(self.table), params)
            return await cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as error:
            self.aconnections.pop(session, None)
            raise BackendUnavailableError(str(error).strip()) from error

    @staticmethod
    def _records(rows: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in rows]

    def append(self, session: str, records: Sequence[Mapping[str, Any]], /) -> None:
        self._run(session, self.INSERT, (session, json.dumps(records)))

    def fetch(self, session: str, /, *, limit: int | None = None) -> list[dict[str, Any]]:
        return self._records(self._run(session, self.NEWEST, (session, limit)))

    async def aappend(self, session: str, records: Sequence[Mapping[str, Any]], /) -> None:
        await self._arun(session, self.INSERT, (session, json.dumps(records)))

    async def afetch(self, session: str, /, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        return self._records(await self._arun(session, self.NEWEST, (session, limit)))

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()

    async def aclose(self) -> None:
        for connection in self.aconnections.values():
            await connection.close()


def open_store(url: str, raw: bool, table: str) -> churn.ChurnStore:
    """A writer process's store: the backend, or the floor."""
    # The pools' reconnection warnings and the retries' are expected here, thousands.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    logging.getLogger("chathistory_postgres").setLevel(logging.ERROR)
    if raw:
        return RawWriters(url, table)
    store: churn.ChurnStore = get_backend("postgres", conninfo=url, table=table, timeout=TIMEOUT)
    return store


def main() -> None:
    parser = churn.churn_parser(__doc__.splitlines()[0])
    parser.add_argument("--raw", action="store_true",
                        help="also run each phase with the floor: psycopg alone, a connection "
                             "per writer, reopened at once")
    options = parser.parse_args()
    with churn.running(PrivateServer()) as server:
        contenders = [churn.Writers(partial(open_store, server.url, False))]
        if options.raw:
            contenders.append(churn.Writers(partial(open_store, server.url, True), label="raw"))
        churn.run_churn(server, contenders, options, churn.ChurnSettings(timeout=TIMEOUT),
                        f"private server on port {server.port}")


if __name__ == "__main__":
    main()
