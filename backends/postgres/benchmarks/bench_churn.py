"""Connection churn: the same writers with and without killed connections, and across a restart.

Starts a PRIVATE PostgreSQL cluster (``initdb``/``pg_ctl``, a free port, a
temporary directory removed at the end; never the server of the tests) and
runs three phases, each on a table of its own:

- ``steady``: 4 processes x (4 threads + 2 async tasks) append ``--batches``
  numbered batches of 2 messages each, to one session per writer;
- ``kills``: the same, while an admin connection terminates a share of the
  writers' connections (``--kill-share``, 10% by default, at least one; 1 for
  all of them) every 20-100 ms (``pg_terminate_backend``);
- ``restart``: the same without kills, while the server is stopped with
  ``pg_ctl stop -m immediate`` (a crash) one second in, and started again 3 s
  later.

A writer whose append raises ``BackendUnavailableError`` reads its session to
learn whether the batch was stored (the error says it was stored entirely or
not at all) and appends it again if not, as an application would. Every call
is timed; a call that took the pool's ``timeout`` or longer while the server
was up is counted as a stall. Afterwards every session must hold exactly its
batches, each whole, once, in order.

    .venv/bin/python backends/postgres/benchmarks/bench_churn.py [--batches 1000] [--raw]

``--raw`` runs each phase a second time with the floor: psycopg alone, one
connection per writer, reopened at once when it fails.

Bounded: each phase gives up after ``--deadline`` seconds (and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import logging
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from langchain_core.messages import HumanMessage, message_to_dict

PROCESSES = 4
THREADS = 4
TASKS = 2  # async tasks per process: 8 in all
TIMEOUT = 10.0  # the backend's default pool timeout, given explicitly
RESTART_AFTER = 1.0
DOWN_FOR = 3.0


# -- the private server ------------------------------------------------------------------


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

    def remove(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        server.pg_ctl("start")
        yield server
    finally:
        server.remove()


# -- the writers (in child processes) ----------------------------------------------------


@dataclass
class Tally:
    """What one writer saw."""

    done: int = 0
    unavailable: dict[str, int] = field(default_factory=dict)  # first words -> count
    slow_calls: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    longest: float = 0.0

    def timed(self, started: float) -> None:
        took = time.time() - started
        self.longest = max(self.longest, took)
        if took >= TIMEOUT * 0.9:
            self.slow_calls.append((started, took))

    def failed(self, error: BaseException) -> None:
        kind = str(error).split(":")[-1].strip()[:60] or type(error).__name__
        self.unavailable[kind] = self.unavailable.get(kind, 0) + 1


def batch(number: int) -> list[dict[str, Any]]:
    return [message_to_dict(HumanMessage(f"{number}:{part}")) for part in range(2)]


def stored_last(records: list[dict[str, Any]]) -> int:
    return int(records[-1]["data"]["content"].split(":")[0]) if records else -1


def sync_writer(backend: Any, session: str, batches: int, deadline: float, tally: Tally
                ) -> None:
    from chathistory import BackendUnavailableError

    number = 0
    while number < batches and time.time() < deadline:
        started = time.time()
        try:
            backend.append(session, batch(number))
        except BackendUnavailableError as error:
            tally.timed(started)
            tally.failed(error)
            while time.time() < deadline:  # was it stored? ask until the server answers
                started = time.time()
                try:
                    last = stored_last(backend.fetch(session, limit=2))
                except BackendUnavailableError as read_error:
                    tally.timed(started)
                    tally.failed(read_error)
                    continue
                tally.timed(started)
                number = last + 1
                break
            continue
        tally.timed(started)
        number += 1
    tally.done = number


async def async_writer(backend: Any, session: str, batches: int, deadline: float,
                       tally: Tally) -> None:
    from chathistory import BackendUnavailableError

    number = 0
    while number < batches and time.time() < deadline:
        started = time.time()
        try:
            await backend.aappend(session, batch(number))
        except BackendUnavailableError as error:
            tally.timed(started)
            tally.failed(error)
            while time.time() < deadline:
                started = time.time()
                try:
                    last = stored_last(await backend.afetch(session, limit=2))
                except BackendUnavailableError as read_error:
                    tally.timed(started)
                    tally.failed(read_error)
                    continue
                tally.timed(started)
                number = last + 1
                break
            continue
        tally.timed(started)
        number += 1
    tally.done = number


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
        from chathistory import BackendUnavailableError

        try:
            connection = self.connections.get(session)
            if connection is None or connection.closed:
                connection = self.connections[session] = psycopg.connect(
                    self.url, autocommit=True, application_name="chathistory-postgres")
            cursor = connection.execute(query.format(self.table), params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as error:
            self.connections.pop(session, None)
            raise BackendUnavailableError(str(error).strip()) from error

    async def _arun(self, session: str, query: str, params: tuple[Any, ...]) -> list[Any]:
        from chathistory import BackendUnavailableError

        try:
            connection = self.aconnections.get(session)
            if connection is None or connection.closed:
                connection = self.aconnections[session] = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name="chathistory-postgres")
            cursor = await connection.execute(query.format(self.table), params)
            return await cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as error:
            self.aconnections.pop(session, None)
            raise BackendUnavailableError(str(error).strip()) from error

    @staticmethod
    def _records(rows: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in rows]

    def append(self, session: str, records: list[dict[str, Any]]) -> None:
        self._run(session, self.INSERT, (session, json.dumps(records)))

    def fetch(self, session: str, *, limit: int) -> list[dict[str, Any]]:
        return self._records(self._run(session, self.NEWEST, (session, limit)))

    async def aappend(self, session: str, records: list[dict[str, Any]]) -> None:
        await self._arun(session, self.INSERT, (session, json.dumps(records)))

    async def afetch(self, session: str, *, limit: int) -> list[dict[str, Any]]:
        return self._records(await self._arun(session, self.NEWEST, (session, limit)))

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()

    async def aclose(self) -> None:
        for connection in self.aconnections.values():
            await connection.close()


def writer_process(url: str, table: str, process: int, batches: int, ready: Any, go: Any,
                   results: Any, deadline_after: float, raw: bool) -> None:
    from chathistory import get_backend

    # The pools' reconnection warnings and the retries' are expected here, thousands.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    logging.getLogger("chathistory_postgres").setLevel(logging.ERROR)
    backend: Any = RawWriters(url, table) if raw else get_backend(
        "postgres", conninfo=url, table=table, timeout=TIMEOUT)
    tallies: dict[str, Tally] = {}

    async def warm_and_run(start: threading.Event) -> None:
        await backend.afetch("warm-up", limit=1)  # opens the async pool before the clock starts
        ready.put(f"async{process}")
        await asyncio.to_thread(start.wait)
        deadline = time.time() + deadline_after
        names = [f"p{process}-async{task}" for task in range(TASKS)]
        for name in names:
            tallies[name] = Tally()
        await asyncio.gather(*(async_writer(backend, name, batches, deadline, tallies[name])
                               for name in names))
        await backend.aclose()

    start = threading.Event()
    backend.fetch("warm-up", limit=1)  # opens the sync pool
    loop_thread = threading.Thread(target=asyncio.run, args=(warm_and_run(start),))
    loop_thread.start()
    go.wait()
    start.set()
    deadline = time.time() + deadline_after
    threads = []
    for thread in range(THREADS):
        name = f"p{process}-sync{thread}"
        tallies[name] = Tally()
        threads.append(threading.Thread(target=sync_writer, args=(
            backend, name, batches, deadline, tallies[name])))
    for worker in threads:
        worker.start()
    for worker in [*threads, loop_thread]:
        worker.join()
    backend.close()
    results.put({name: vars(tally) for name, tally in tallies.items()})


# -- the phases ----------------------------------------------------------------------------


def killer(url: str, share: float, stop: threading.Event, kills: list[int]) -> None:
    """Terminate ``share`` of the writers' connections (at least one) every 20-100 ms."""
    admin: psycopg.Connection[Any] | None = None
    while not stop.wait(random.uniform(0.02, 0.1)):
        try:
            admin = admin or psycopg.connect(url, autocommit=True, application_name="bench-admin")
            kills[0] += sum(killed for (killed,) in admin.execute(
                "SELECT pg_terminate_backend(pid) FROM (SELECT pid, random() AS draw, "
                "row_number() OVER (ORDER BY random()) AS position FROM pg_stat_activity "
                "WHERE application_name = 'chathistory-postgres') AS c "
                "WHERE draw < %s OR position = 1", (share,)).fetchall())
        except psycopg.OperationalError:
            admin = None
    if admin is not None:
        admin.close()


def verify(url: str, table: str, batches: dict[str, int]) -> list[str]:
    """Each session holds its batches 0..done-1, each whole, once, in order."""
    problems = []
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            f'SELECT session_id, message -> \'data\' ->> \'content\' FROM "{table}" ORDER BY id'
        ).fetchall()
    stored: dict[str, list[str]] = {}
    for session, content in rows:
        stored.setdefault(session, []).append(content)
    for session, done in batches.items():
        expected = [f"{number}:{part}" for number in range(done) for part in range(2)]
        found = stored.get(session, [])
        # A batch past `done` may be stored when the deadline cut a writer's check short.
        if found[:len(expected)] != expected or len(found) > len(expected) + 2:
            differs = next((position for position, (got, wanted)
                            in enumerate(zip(found, expected, strict=False)) if got != wanted),
                           min(len(found), len(expected)))
            problems.append(f"{session}: {len(found)} records, expected {len(expected)}; "
                            f"first difference at {differs}")
    return problems


def run_phase(server: PrivateServer, phase: str, batches: int, deadline: float, raw: bool,
              kill_share: float) -> None:
    table = f"churn_{phase}{'_raw' if raw else ''}"
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=writer_process, args=(
        server.url, table, process, batches, ready, go, results, deadline, raw))
        for process in range(PROCESSES)]
    from chathistory import get_backend

    creator = get_backend("postgres", conninfo=server.url, table=table)
    creator.create_collection()
    creator.close()
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=60)
    stop = threading.Event()
    kills = [0]
    helper: threading.Thread | None = None
    down: tuple[float, float] | None = None
    started = time.time()
    go.set()
    if phase == "kills":
        helper = threading.Thread(target=killer, args=(server.url, kill_share, stop, kills))
        helper.start()
    if phase == "restart":
        time.sleep(RESTART_AFTER)
        down_at = time.time()
        server.pg_ctl("stop", "-m", "immediate")
        time.sleep(DOWN_FOR)
        server.pg_ctl("start")
        down = (down_at, time.time())
    tallies: dict[str, dict[str, Any]] = {}
    for _ in processes:
        tallies.update(results.get(timeout=deadline + 120))
    elapsed = time.time() - started
    stop.set()
    if helper is not None:
        helper.join()
    for process in processes:
        process.join()

    done = {name: tally["done"] for name, tally in tallies.items()}
    errors: dict[str, int] = {}
    for tally in tallies.values():
        for kind, count in tally["unavailable"].items():
            errors[kind] = errors.get(kind, 0) + count
    # A call that took the pool's timeout while the server was up (not overlapping the
    # window it was down, plus the pool's first reconnection after it).
    stalls = [took for tally in tallies.values() for start, took in tally["slow_calls"]
              if down is None or start + took < down[0] or start > down[1]]
    total, wanted = sum(done.values()), batches * len(done)
    finished = "finished" if total == wanted else f"NOT finished ({total:,} of {wanted:,})"
    name = phase + (" raw" if raw else "")
    print(f"{name:12s} {total:7,} batches in {elapsed:6.2f} s ({finished}); "
          f"longest call {max(t['longest'] for t in tallies.values()):.2f} s; "
          f"calls >= {TIMEOUT * 0.9:g} s while the server was up: {len(stalls)}"
          + (f"; {kills[0]} connections killed" if phase == "kills" else "")
          + (f"; down {down[1] - down[0]:.1f} s" if down else ""))
    if errors:
        print("         unavailable errors: " + "; ".join(
            f"{count} x {kind!r}" for kind, count in sorted(errors.items(), key=lambda e: -e[1])))
    problems = verify(server.url, table, done)
    print("         verified: nothing lost, torn, duplicated or out of order" if not problems
          else "         PROBLEMS:\n           " + "\n           ".join(problems[:10]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000, help="per writer (24 writers)")
    parser.add_argument("--deadline", type=float, default=90.0, help="seconds per phase")
    parser.add_argument("--phases", default="steady,kills,restart")
    parser.add_argument("--kill-share", type=float, default=0.1,
                        help="share of the writers' connections terminated each time "
                             "(at least one); 1 terminates them all")
    parser.add_argument("--raw", action="store_true",
                        help="also run each phase with the floor: psycopg alone, a connection "
                             "per writer, reopened at once")
    options = parser.parse_args()
    with private_server() as server:
        print(f"private server on port {server.port}; {PROCESSES} processes x ({THREADS} "
              f"threads + {TASKS} async tasks), {options.batches} batches of 2 each")
        for phase in options.phases.split(","):
            run_phase(server, phase, options.batches, options.deadline, False,
                      options.kill_share)
            if options.raw:
                run_phase(server, phase, options.batches, options.deadline, True,
                          options.kill_share)


if __name__ == "__main__":
    main()
