"""Connection churn on MariaDB: the same writers without kills, with kills, and across a restart.

The phases, writers and checks are ``chathistory.testing.churn``'s (steady,
kills, restart; 4 processes x (4 threads + 2 async tasks), each writer
appending ``--batches`` numbered batches to its own session, through one
backend per process: its sync engine on PyMySQL, its async engine on
aiomysql). This script brings a PRIVATE MariaDB server (tests/private_mariadb.py:
``mariadb-install-db`` and ``mariadbd`` in a temporary directory, on a free port of 127.0.0.1,
removed at the end; never the server of the tests), a table per phase, and
its faults: an admin connection ``KILL``s every other connection of the
server every 20-100 ms, and a SIGKILL with a restart 3 s later. A writer
retries on any ``ChatHistoryError``; the pool's ``pool_timeout`` is 10 s.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_churn.py [--batches 500]

Each phase gives up after ``--deadline`` seconds (and says so). mypy needs the
server's module named beside it (it is found through ``sys.path`` at run time)::

    .venv/bin/mypy --strict backends/sqlalchemy/benchmarks/*.py \
        backends/sqlalchemy/tests/private_mariadb.py
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # as client.py: no stubs in the venv

from chathistory import ChatHistoryError, get_backend
from chathistory.testing import churn

sys.path.append(str(Path(__file__).parents[1] / "tests"))
from private_mariadb import PrivateServer  # in tests/: the tests use it too

POOL_TIMEOUT = 10.0  # given explicitly (the default is 30 s): a stall shows sooner
POOL_SIZE = 4  # a writer process's threads


CHURN_SETTINGS = ("--max-connections=400", "--innodb-flush-log-at-trx-commit=2",
                  "--innodb-buffer-pool-size=128M")


class ChurnMariaDB(PrivateServer):
    """The private server (tests/private_mariadb.py) with what the phases ask of it:
    a table per phase, its connections killed, what was stored."""

    def __init__(self) -> None:
        super().__init__("churn", CHURN_SETTINGS)
        self.killer: Any = None

    def prepare(self, target: str) -> None:
        creator = get_backend("sqlalchemy", url=self.url, table=target)
        creator.create_collection()
        creator.close()

    def kill_connections(self, share: float) -> int:
        """KILL every other client connection of the server (``share`` is not used)."""
        self.killer = self.killer or self.connect()
        cursor = self.killer.cursor()
        cursor.execute("SELECT id FROM information_schema.processlist "
                       "WHERE id <> CONNECTION_ID() AND command <> 'Daemon' AND user = 'root'")
        kills = 0
        for (connection_id,) in cursor.fetchall():
            try:
                cursor.execute(f"KILL CONNECTION {int(connection_id)}")
                kills += 1
            except pymysql.err.OperationalError:  # 1094: it had ended meanwhile
                pass
        return kills

    def stored(self, target: str, sessions: Sequence[str]) -> Mapping[str, Sequence[str]]:
        admin = self.connect()
        cursor = admin.cursor()
        cursor.execute(f"SELECT session_id, JSON_VALUE(message, '$.data.content') "
                       f"FROM `{target}` ORDER BY id")
        stored: dict[str, list[str]] = {}
        for session, content in cursor.fetchall():
            stored.setdefault(session, []).append(content)
        admin.close()
        return stored

    def remove(self) -> None:
        if self.killer is not None:
            self.killer.close()
        super().remove()


def describe(error: BaseException) -> str:
    """An error's kind for the report."""
    text = str(error)
    if "stored entirely or not at all" in text:
        return "append: commit lost (stored entirely or not at all)"
    if "unavailable after" in text:
        return "unavailable after retries: " + text.split(":")[-1].strip()[:50]
    return f"{type(error).__name__}: {text.split(':')[-1].strip()[:60]}"


def open_store(url: str, tls_probe: bool, table: str) -> churn.ChurnStore:
    """The backend of one writer process: built from ``url`` (the defaults), or on an
    application's engine whose connections never try TLS (``ssl_disabled``)."""
    from sqlalchemy import create_engine, make_url

    logging.getLogger("chathistory_sqlalchemy").setLevel(logging.ERROR)  # a retry each kill
    store: churn.ChurnStore
    if tls_probe:
        store = get_backend("sqlalchemy", url=url, table=table, pool_size=POOL_SIZE,
                            pool_timeout=POOL_TIMEOUT)
        return store
    engine = create_engine(url, pool_size=POOL_SIZE, pool_timeout=POOL_TIMEOUT,
                           pool_pre_ping=True, connect_args={"ssl_disabled": True})
    async_url = make_url(url).set(drivername="mysql+aiomysql")
    store = get_backend("sqlalchemy", engine=engine, table=table, pool_timeout=POOL_TIMEOUT,
                        async_url=async_url.render_as_string(hide_password=False))
    return store


def main() -> None:
    parser = churn.churn_parser(__doc__.splitlines()[0], batches=500, kill_share=False)
    parser.add_argument("--no-tls-probe", action="store_true",
                        help="writers on an application's engine with PyMySQL's ssl_disabled "
                             "instead of the backend's own engines")
    options = parser.parse_args()
    settings = churn.ChurnSettings(timeout=POOL_TIMEOUT, retried=(ChatHistoryError,),
                                   describe=describe, threads=POOL_SIZE)
    with churn.running(ChurnMariaDB()) as server:
        engines = "an engine with ssl_disabled" if options.no_tls_probe else "own engines"
        writers = churn.Writers(partial(open_store, server.url, not options.no_tls_probe))
        churn.run_churn(server, [writers], options, settings,
                        f"private MariaDB on port {server.port} ({engines})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    main()
