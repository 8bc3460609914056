"""Connection churn on MariaDB: the same writers without kills, with kills, and across a restart.

Starts a PRIVATE MariaDB server (``mariadb-install-db`` and ``mariadbd`` in a
temporary directory, on a free port of 127.0.0.1, removed at the end; never
the server of the tests) and runs three phases, each on a table of its own:

- ``steady``: 4 processes x (4 threads + 2 async tasks) append ``--batches``
  numbered batches of 2 messages each, one session per writer, through one
  backend per process (its sync engine on PyMySQL, its async engine on
  aiomysql);
- ``kills``: the same, while an admin connection ``KILL``s every other
  connection of the server every 20-100 ms;
- ``restart``: the same without kills, while the server is killed (SIGKILL, a
  crash) one second in and started again 3 s later.

A writer whose append raises ``BackendUnavailableError`` reads its session to
learn whether the batch was stored (the error says it was stored entirely or
not at all) and appends it again if not, as an application would. Every call
is timed; a call that took the pool's ``pool_timeout`` or longer while the
server was up is counted as a stall. Afterwards every session must hold
exactly its batches, each whole, once, in order.

    .venv/bin/python backends/sqlalchemy/benchmarks/bench_churn.py [--batches 500]

Bounded: each phase gives up after ``--deadline`` seconds (and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import signal
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

import pymysql
from langchain_core.messages import HumanMessage, message_to_dict

PROCESSES = 4
THREADS = 4
TASKS = 2  # async tasks per process: 8 in all
POOL_TIMEOUT = 10.0  # given explicitly (the default is 30 s): a stall shows sooner
RESTART_AFTER = 1.0
DOWN_FOR = 3.0


# -- the private server ------------------------------------------------------------------


class PrivateServer:
    """A mariadbd of its own: root without a password on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        if shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/sbin") is None:
            raise SystemExit("bench_churn needs mariadbd and mariadb-install-db")
        self.directory = Path(tempfile.mkdtemp(prefix="chathistory-churn-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/churn?charset=utf8mb4"
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                        "--auth-root-authentication-method=normal", "--user=root",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)

    @property
    def data(self) -> str:
        return str(self.directory / "data")

    def connect(self, database: str | None = "churn") -> pymysql.Connection[Any]:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                               database=database, autocommit=True, charset="utf8mb4")

    def start(self) -> None:
        mariadbd = shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/sbin")
        assert mariadbd is not None
        self.process = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
             f"--socket={self.directory / 'socket'}", "--bind-address=127.0.0.1",
             "--user=root", f"--log-error={self.directory / 'error.log'}",
             "--skip-log-bin", "--max-connections=400", "--innodb-flush-log-at-trx-commit=2",
             "--innodb-buffer-pool-size=128M"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.connect(database=None).close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"the private server did not start: see "
                                     f"{self.directory / 'error.log'}") from None
                time.sleep(0.05)

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        server.start()
        admin = server.connect(database=None)
        admin.cursor().execute("CREATE DATABASE churn CHARACTER SET utf8mb4")
        admin.close()
        yield server
    finally:
        server.remove()


# -- the writers (in child processes) ----------------------------------------------------


@dataclass
class Tally:
    """What one writer saw."""

    done: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count
    slow_calls: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    longest: float = 0.0

    def timed(self, started: float) -> None:
        took = time.time() - started
        self.longest = max(self.longest, took)
        if took >= POOL_TIMEOUT * 0.9:
            self.slow_calls.append((started, took))

    def failed(self, error: BaseException) -> None:
        text = str(error)
        if "stored entirely or not at all" in text:
            kind = "append: commit lost (stored entirely or not at all)"
        elif "unavailable after" in text:
            kind = "unavailable after retries: " + text.split(":")[-1].strip()[:50]
        else:
            kind = f"{type(error).__name__}: {text.split(':')[-1].strip()[:60]}"
        self.errors[kind] = self.errors.get(kind, 0) + 1


def batch(number: int) -> list[dict[str, Any]]:
    return [message_to_dict(HumanMessage(f"{number}:{part}")) for part in range(2)]


def stored_last(records: list[dict[str, Any]]) -> int:
    return int(records[-1]["data"]["content"].split(":")[0]) if records else -1


def sync_writer(backend: Any, session: str, batches: int, deadline: float, tally: Tally
                ) -> None:
    from chathistory import ChatHistoryError

    number = 0
    while number < batches and time.time() < deadline:
        started = time.time()
        try:
            backend.append(session, batch(number))
        except ChatHistoryError as error:
            tally.timed(started)
            tally.failed(error)
            while time.time() < deadline:  # was it stored? ask until the server answers
                started = time.time()
                try:
                    last = stored_last(backend.fetch(session, limit=2))
                except ChatHistoryError as read_error:
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
    from chathistory import ChatHistoryError

    number = 0
    while number < batches and time.time() < deadline:
        started = time.time()
        try:
            await backend.aappend(session, batch(number))
        except ChatHistoryError as error:
            tally.timed(started)
            tally.failed(error)
            while time.time() < deadline:
                started = time.time()
                try:
                    last = stored_last(await backend.afetch(session, limit=2))
                except ChatHistoryError as read_error:
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


def build_backend(url: str, table: str, tls_probe: bool) -> Any:
    """The backend of one writer process: built from ``url`` (the defaults), or on an
    application's engine whose connections never try TLS (``ssl_disabled``)."""
    from sqlalchemy import create_engine, make_url

    from chathistory import get_backend

    if tls_probe:
        return get_backend("sqlalchemy", url=url, table=table, pool_size=THREADS,
                           pool_timeout=POOL_TIMEOUT)
    engine = create_engine(url, pool_size=THREADS, pool_timeout=POOL_TIMEOUT,
                           pool_pre_ping=True, connect_args={"ssl_disabled": True})
    async_url = make_url(url).set(drivername="mysql+aiomysql")
    return get_backend("sqlalchemy", engine=engine, table=table, pool_timeout=POOL_TIMEOUT,
                       async_url=async_url.render_as_string(hide_password=False))


def writer_process(url: str, table: str, process: int, batches: int, ready: Any, go: Any,
                   results: Any, deadline_after: float, tls_probe: bool) -> None:
    backend = build_backend(url, table, tls_probe)
    tallies: dict[str, Tally] = {}

    async def warm_and_run(start: threading.Event) -> None:
        await backend.afetch("warm-up")  # opens the async pool before the clock starts
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
    backend.fetch("warm-up")  # opens the sync pool
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


def killer(server: PrivateServer, stop: threading.Event, kills: list[int]) -> None:
    """KILL every other client connection of the private server every 20-100 ms."""
    admin = server.connect()
    cursor = admin.cursor()
    while not stop.wait(random.uniform(0.02, 0.1)):
        cursor.execute("SELECT id FROM information_schema.processlist "
                       "WHERE id <> CONNECTION_ID() AND command <> 'Daemon' "
                       "AND user = 'root'")
        for (connection_id,) in cursor.fetchall():
            try:
                cursor.execute(f"KILL CONNECTION {int(connection_id)}")
                kills[0] += 1
            except pymysql.err.OperationalError:  # 1094: it had ended meanwhile
                pass
    admin.close()


def verify(server: PrivateServer, table: str, batches: dict[str, int]) -> list[str]:
    """Each session holds its batches 0..done-1, each whole, once, in order."""
    problems = []
    admin = server.connect()
    cursor = admin.cursor()
    cursor.execute(f"SELECT session_id, JSON_VALUE(message, '$.data.content') "
                   f"FROM `{table}` ORDER BY id")
    stored: dict[str, list[str]] = {}
    for session, content in cursor.fetchall():
        stored.setdefault(session, []).append(content)
    admin.close()
    for session, done in batches.items():
        expected = [f"{number}:{part}" for number in range(done) for part in range(2)]
        found = stored.get(session, [])
        # A batch past `done` may be stored when the deadline cut a writer's check short.
        if found[:len(expected)] != expected or len(found) > len(expected) + 2:
            first = next((i for i, (a, b) in enumerate(zip(found, expected, strict=False))
                          if a != b), min(len(found), len(expected)))
            problems.append(f"{session}: {len(found)} records, expected {len(expected)}; "
                            f"first difference at {first}")
    return problems


def run_phase(server: PrivateServer, phase: str, batches: int, deadline: float,
              tls_probe: bool) -> float:
    from chathistory import get_backend

    table = f"churn_{phase}"
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=writer_process, args=(
        server.url, table, process, batches, ready, go, results, deadline, tls_probe))
        for process in range(PROCESSES)]
    creator = get_backend("sqlalchemy", url=server.url, table=table)
    creator.create_collection()
    creator.close()
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    stop = threading.Event()
    kills = [0]
    helper: threading.Thread | None = None
    down: tuple[float, float] | None = None
    started = time.time()
    go.set()
    if phase == "kills":
        helper = threading.Thread(target=killer, args=(server, stop, kills))
        helper.start()
    if phase == "restart":
        time.sleep(RESTART_AFTER)
        down_at = time.time()
        server.crash()
        time.sleep(DOWN_FOR)
        server.start()
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
        for kind, count in tally["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    # A call that took the pool's timeout while the server was up (not overlapping the
    # window it was down).
    stalls = [took for tally in tallies.values() for start, took in tally["slow_calls"]
              if down is None or start + took < down[0] or start > down[1]]
    total, wanted = sum(done.values()), batches * len(done)
    finished = "finished" if total == wanted else f"NOT finished ({total:,} of {wanted:,})"
    print(f"{phase:8s} {total:7,} batches in {elapsed:6.2f} s ({finished}); "
          f"longest call {max(t['longest'] for t in tallies.values()):.2f} s; "
          f"calls >= {POOL_TIMEOUT * 0.9:g} s while the server was up: {len(stalls)}"
          + (f"; kills {kills[0]}" if phase == "kills" else "")
          + (f"; down {down[1] - down[0]:.1f} s" if down else ""), flush=True)
    if errors:
        print("         errors the writers saw: " + "; ".join(
            f"{count} x {kind!r}" for kind, count in sorted(errors.items(),
                                                            key=lambda e: -e[1])))
    problems = verify(server, table, done)
    print("         verified: nothing lost, torn, duplicated or out of order" if not problems
          else "         PROBLEMS:\n           " + "\n           ".join(problems[:10]),
          flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=500, help="per writer (24 writers)")
    parser.add_argument("--deadline", type=float, default=90.0, help="seconds per phase")
    parser.add_argument("--phases", default="steady,kills,restart")
    parser.add_argument("--no-tls-probe", action="store_true",
                        help="writers on an application's engine with PyMySQL's ssl_disabled "
                             "instead of the backend's own engines")
    options = parser.parse_args()
    with private_server() as server:
        print(f"private MariaDB on port {server.port}; {PROCESSES} processes x ({THREADS} "
              f"threads + {TASKS} async tasks), {options.batches} batches of 2 each; "
              f"{'an engine with ssl_disabled' if options.no_tls_probe else 'own engines'}",
              flush=True)
        times = {phase: run_phase(server, phase, options.batches, options.deadline,
                                  not options.no_tls_probe)
                 for phase in options.phases.split(",")}
    if "steady" in times and "kills" in times:
        print(f"kills / steady = {times['kills'] / times['steady']:.2f}   target: <= 2")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    main()
