"""Connection churn: the same writers with and without killed connections, and across a restart.

Starts a PRIVATE ``redis-server`` (a free port, a temporary directory removed
at the end, ``appendonly yes`` with ``appendfsync always`` so that a crash
loses no acknowledged write; never the server of the tests) and runs three
phases, each under a key prefix of its own:

- ``steady``: 4 processes x (4 threads + 2 async tasks) append ``--batches``
  numbered batches of 2 messages each, to one session per writer;
- ``kills``: the same, while an admin connection kills a share of the writers'
  connections (``--kill-share``, 10% by default, at least one; 1 for all of
  them) every 20-100 ms (``CLIENT KILL ID``);
- ``restart``: the same without kills, while the server is killed (``SIGKILL``)
  one second in and started again 3 s later (it reloads its append-only file).

By default steady and kills run twice, alternately, so that the changing load
of a shared machine falls on both; the ratio is of their mean times.

A writer whose append raises ``BackendUnavailableError`` reads its session to
learn whether the batch was stored (the error says it was stored entirely or
not at all) and appends it again if not, as an application would. Every call
is timed; a call that took 90% of the pool's ``pool_timeout`` or longer while
the server was up is counted as a stall. Afterwards every session must hold
exactly its batches, each whole, once, in order.

    .venv/bin/python backends/redis/benchmarks/bench_churn.py [--batches 1000]

Bounded: each phase gives up after ``--deadline`` seconds (and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
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

import redis
from langchain_core.messages import HumanMessage, message_to_dict

PROCESSES = 4
THREADS = 4
TASKS = 2  # async tasks per process: 8 in all
TIMEOUT = 10.0  # the pool's timeout, given explicitly
NAME = "chathistory-churn"  # the writers' connections' name, for the killer
RESTART_AFTER = 1.0
DOWN_FOR = 3.0


class PrivateServer:
    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("bench_churn needs redis-server")
        self.directory = Path(tempfile.mkdtemp(prefix="chathistory-churn-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--maxclients", "1000",
             "--logfile", str(self.directory / "log")])
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with self.admin() as admin:
                    admin.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise SystemExit("the private redis-server did not start")

    def crash(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def remove(self) -> None:
        self.crash()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


# -- the writers (in child processes) ----------------------------------------------------


@dataclass
class Tally:
    """What one writer saw."""

    done: int = 0
    unavailable: dict[str, int] = field(default_factory=dict)  # last words -> count
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
                    number = stored_last(backend.fetch(session, limit=2)) + 1
                except BackendUnavailableError as read_error:
                    tally.failed(read_error)
                    continue
                finally:
                    tally.timed(started)
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
                    number = stored_last(await backend.afetch(session, limit=2)) + 1
                except BackendUnavailableError as read_error:
                    tally.failed(read_error)
                    continue
                finally:
                    tally.timed(started)
                break
            continue
        tally.timed(started)
        number += 1
    tally.done = number


def writer_process(url: str, prefix: str, process: int, batches: int, ready: Any, go: Any,
                   results: Any, deadline_after: float) -> None:
    from chathistory import get_backend

    logging.getLogger("chathistory_redis").setLevel(logging.ERROR)  # a retry each kill
    backend: Any = get_backend("redis", url=f"{url}?client_name={NAME}", key_prefix=prefix,
                               pool_timeout=TIMEOUT)
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


def killer(server: PrivateServer, share: float, stop: threading.Event, kills: list[int]
           ) -> None:
    """Kill ``share`` of the writers' connections (at least one) every 20-100 ms."""
    with server.admin() as admin:
        while not stop.wait(random.uniform(0.02, 0.1)):
            writers = [client["id"] for client in admin.client_list(_type="normal")
                       if client.get("name") == NAME]
            if not writers:
                continue
            chosen = [id_ for id_ in writers if random.random() < share] or [
                random.choice(writers)]
            pipe = admin.pipeline(transaction=False)
            for id_ in chosen:
                pipe.execute_command("CLIENT", "KILL", "ID", id_)
            kills[0] += sum(1 for reply in pipe.execute(raise_on_error=False)
                            if reply is True or reply == 1 or reply == "OK")


def verify(server: PrivateServer, prefix: str, batches: dict[str, int]) -> list[str]:
    """Each session holds its batches 0..done-1, each whole, once, in order."""
    from chathistory import get_backend

    problems = []
    reader: Any = get_backend("redis", url=server.url, key_prefix=prefix)
    try:
        for session, done in batches.items():
            expected = [f"{number}:{part}" for number in range(done) for part in range(2)]
            found = [record["data"]["content"] for record in reader.fetch(session)]
            # A batch past `done` may be stored when the deadline cut a writer's check short.
            if found[:len(expected)] != expected or len(found) > len(expected) + 2:
                differs = next((position for position, (got, wanted)
                                in enumerate(zip(found, expected, strict=False))
                                if got != wanted), min(len(found), len(expected)))
                problems.append(f"{session}: {len(found)} records, expected {len(expected)}; "
                                f"first difference at {differs}")
    finally:
        reader.close()
    return problems


def run_phase(server: PrivateServer, phase: str, batches: int, deadline: float,
              kill_share: float, number: int) -> float:
    prefix = f"churn-{number}-{phase}"
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=writer_process, args=(
        server.url, prefix, process, batches, ready, go, results, deadline))
        for process in range(PROCESSES)]
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
        helper = threading.Thread(target=killer, args=(server, kill_share, stop, kills))
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
        for kind, count in tally["unavailable"].items():
            errors[kind] = errors.get(kind, 0) + count
    # A call that took the pool's timeout while the server was up (not overlapping the
    # window it was down).
    stalls = [took for tally in tallies.values() for start, took in tally["slow_calls"]
              if down is None or start + took < down[0] or start > down[1]]
    total, wanted = sum(done.values()), batches * len(done)
    finished = "finished" if total == wanted else f"NOT finished ({total:,} of {wanted:,})"
    print(f"{phase:8s} {total:7,} batches in {elapsed:6.2f} s ({finished}); "
          f"longest call {max(t['longest'] for t in tallies.values()):.2f} s; "
          f"calls >= {TIMEOUT * 0.9:g} s while the server was up: {len(stalls)}"
          + (f"; {kills[0]} connections killed" if phase == "kills" else "")
          + (f"; down {down[1] - down[0]:.1f} s" if down else ""))
    if errors:
        print("         unavailable errors: " + "; ".join(
            f"{count} x {kind!r}" for kind, count in sorted(errors.items(), key=lambda e: -e[1])
        ))
    problems = verify(server, prefix, done)
    print("         verified: nothing lost, torn, duplicated or out of order" if not problems
          else "         PROBLEMS:\n           " + "\n           ".join(problems[:10]))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000, help="per writer (24 writers)")
    parser.add_argument("--deadline", type=float, default=90.0, help="seconds per phase")
    parser.add_argument("--phases", default="steady,kills,steady,kills,restart",
                        help="in this order; repeated phases alternate, so that a machine's "
                             "changing load falls on both")
    parser.add_argument("--kill-share", type=float, default=0.1,
                        help="share of the writers' connections killed each time "
                             "(at least one); 1 kills them all")
    options = parser.parse_args()
    with private_server() as server:
        print(f"private redis-server on port {server.port}; {PROCESSES} processes x "
              f"({THREADS} threads + {TASKS} async tasks), {options.batches} batches of 2 each")
        took: dict[str, list[float]] = {}
        for number, phase in enumerate(options.phases.split(",")):
            took.setdefault(phase, []).append(run_phase(
                server, phase, options.batches, options.deadline, options.kill_share, number))
    if "steady" in took and "kills" in took:
        kills, steady = (sum(took[name]) / len(took[name]) for name in ("kills", "steady"))
        ratio = kills / steady
        print(f"kills / steady (mean times) = {ratio:.2f}x "
              f"(target <= 2x: {'met' if ratio <= 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
