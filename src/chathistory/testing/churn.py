"""Connection churn: many writers append numbered batches while their connections die.

The harness behind each backend's ``benchmarks/bench_churn.py``. A script
brings what is its own: a private server (:class:`ChurnServer`: kill some of
the writers' connections, crash, start, read back what a session holds) and
how a writer process opens its store (:class:`Writers`). :func:`run_churn`
does the rest, phase by phase, each phase on a target (table, key prefix) of
its own:

- ``steady``: ``processes`` x (``threads`` + ``tasks`` async tasks) writers
  append ``batches`` numbered batches of 2 records each, one session per
  writer;
- ``kills``: the same, while the server kills a share of the writers'
  connections every 20-100 ms;
- ``restart``: the same without kills, while the server crashes one second
  in and starts again 3 s later.

A writer whose append raises one of ``ChurnSettings.retried`` reads its
session to learn whether the batch was stored (such an error says it was
stored entirely or not at all) and appends it again if not, as an
application would. Every call is timed; a call that took 90% of the pool's
timeout or longer while the server was up is a stall. Afterwards every
session must hold exactly its batches, each whole, once, in order:
:func:`find_problems` names what was lost, torn, duplicated or out of order.

Importing this module imports langchain-core; ``chathistory.testing`` does not
import it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any, Protocol, TypeVar

from langchain_core.messages import HumanMessage, message_to_dict

from chathistory.errors import BackendUnavailableError

__all__ = [
    "ChurnServer",
    "ChurnSettings",
    "ChurnStore",
    "PhaseResult",
    "Tally",
    "Writers",
    "async_writer",
    "batch",
    "churn_parser",
    "find_problems",
    "run_churn",
    "run_phase",
    "running",
    "sync_writer",
]

PARTS = 2  # records per batch
RESTART_AFTER = 1.0  # seconds into the restart phase when the server crashes
DOWN_FOR = 3.0


class ChurnStore(Protocol):
    """What a writer calls: a backend, or a script's floor (the raw driver)."""

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]], /) -> None: ...

    def fetch(self, session_id: str, /, *, limit: int | None = None) -> list[dict[str, Any]]: ...

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]], /
                      ) -> None: ...

    async def afetch(self, session_id: str, /, *, limit: int | None = None
                     ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class ChurnServer(Protocol):
    """A backend's private server, as the phases use it (in the parent process)."""

    def prepare(self, target: str) -> None:
        """Make ``target`` (a table, a key prefix) ready for the writers."""

    def kill_connections(self, share: float) -> int:
        """Kill ``share`` of the writers' connections, at least one; return how many died."""

    def crash(self) -> None:
        """Stop the server abruptly, as a crash would."""

    def start(self) -> None:
        """Start the server again and return once it answers."""

    def stored(self, target: str, sessions: Sequence[str]) -> Mapping[str, Sequence[str]]:
        """The contents of the records each of ``sessions`` holds, in the store's order."""

    def remove(self) -> None:
        """Stop the server if it runs and remove all it wrote."""


Server = TypeVar("Server", bound=ChurnServer)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server``, and remove it when the block ends, however it ends."""
    try:
        server.start()
        yield server
    finally:
        server.remove()


@dataclass(frozen=True)
class Writers:
    """One contender: ``open_store(target)`` runs in each writer process.

    It must be picklable (a module-level function, or a ``functools.partial``
    of one), since writer processes are spawned.
    """

    open_store: Callable[[str], ChurnStore]
    label: str = ""  # "" for the backend, e.g. "raw" for a floor


def last_words(error: BaseException) -> str:
    """An error's kind for the report: the last words of its message."""
    return str(error).split(":")[-1].strip()[:60] or type(error).__name__


@dataclass(frozen=True)
class ChurnSettings:
    """How the writers run; sent to every writer process, so it must be picklable."""

    timeout: float = 10.0  # the pool's timeout, which the script gives the backend
    retried: tuple[type[BaseException], ...] = (BackendUnavailableError,)
    describe: Callable[[BaseException], str] = last_words
    processes: int = 4
    threads: int = 4
    tasks: int = 2  # async tasks per process

    @property
    def stall_after(self) -> float:
        return self.timeout * 0.9

    @property
    def writers(self) -> int:
        return self.processes * (self.threads + self.tasks)


@dataclass
class Tally:
    """What one writer saw."""

    stall_after: float
    done: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count
    slow_calls: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    longest: float = 0.0

    def timed(self, started: float) -> None:
        took = time.time() - started
        self.longest = max(self.longest, took)
        if took >= self.stall_after:
            self.slow_calls.append((started, took))

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def batch(number: int) -> list[dict[str, Any]]:
    """Batch ``number``: records whose contents are ``"<number>:<part>"``."""
    return [message_to_dict(HumanMessage(f"{number}:{part}")) for part in range(PARTS)]


def _stored_last(records: list[dict[str, Any]]) -> int:
    return int(records[-1]["data"]["content"].split(":")[0]) if records else -1


@dataclass(frozen=True)
class _Call:
    append: int | None  # the batch to append; None: read the session's last batch


_Plan = Generator[_Call, list[dict[str, Any]] | None, None]


def _plan(batches: int, deadline: float, tally: Tally, settings: ChurnSettings) -> _Plan:
    """A writer's calls, one at a time: it is sent each call's result, or thrown its error.

    Appends batches 0..``batches``-1; after a failed append, reads until the server
    answers whether the batch was stored, and goes on from the batch after the last
    stored one.
    """
    number = 0
    while number < batches and time.time() < deadline:
        started = time.time()
        try:
            yield _Call(append=number)
        except settings.retried as error:
            tally.timed(started)
            tally.failed(settings.describe(error))
            while time.time() < deadline:  # was it stored? ask until the server answers
                started = time.time()
                try:
                    records = yield _Call(append=None)
                except settings.retried as read_error:
                    tally.timed(started)
                    tally.failed(settings.describe(read_error))
                    continue
                tally.timed(started)
                number = _stored_last(records or []) + 1
                break
            continue
        tally.timed(started)
        number += 1
    tally.done = number


def _next(plan: _Plan, result: list[dict[str, Any]] | None, error: BaseException | None
          ) -> _Call | None:
    try:
        return plan.throw(error) if error is not None else plan.send(result)
    except StopIteration:
        return None


def sync_writer(store: ChurnStore, session: str, batches: int, deadline: float, tally: Tally,
                settings: ChurnSettings) -> None:
    """Append batches 0..``batches``-1 to ``session``, learning by a read what a failure did."""
    plan = _plan(batches, deadline, tally, settings)
    call = _next(plan, None, None)
    while call is not None:
        result, error = None, None
        try:
            if call.append is None:
                result = store.fetch(session, limit=PARTS)
            else:
                store.append(session, batch(call.append))
        except settings.retried as failure:
            error = failure
        call = _next(plan, result, error)


async def async_writer(store: ChurnStore, session: str, batches: int, deadline: float,
                       tally: Tally, settings: ChurnSettings) -> None:
    """:func:`sync_writer` through the store's async methods."""
    plan = _plan(batches, deadline, tally, settings)
    call = _next(plan, None, None)
    while call is not None:
        result, error = None, None
        try:
            if call.append is None:
                result = await store.afetch(session, limit=PARTS)
            else:
                await store.aappend(session, batch(call.append))
        except settings.retried as failure:
            error = failure
        call = _next(plan, result, error)


def writer_process(writers: Writers, settings: ChurnSettings, target: str, process: int,
                   batches: int, ready: Queue[str], go: Event,
                   results: Queue[dict[str, dict[str, Any]]], deadline_after: float) -> None:
    """One writer process: its threads and its event loop's tasks share one store."""
    store = writers.open_store(target)
    tallies: dict[str, Tally] = {}

    async def warm_and_run(start: threading.Event) -> None:
        await store.afetch("warm-up", limit=1)  # opens the async pool before the clock starts
        ready.put(f"async{process}")
        await asyncio.to_thread(start.wait)
        deadline = time.time() + deadline_after
        names = [f"p{process}-async{task}" for task in range(settings.tasks)]
        for name in names:
            tallies[name] = Tally(settings.stall_after)
        await asyncio.gather(*(async_writer(store, name, batches, deadline, tallies[name],
                                            settings) for name in names))
        # A store's aclose may close what its sync methods use too (BaseBackend's does).
        await asyncio.to_thread(threads_done.wait)
        await store.aclose()

    start, threads_done = threading.Event(), threading.Event()
    store.fetch("warm-up", limit=1)  # opens the sync pool
    loop_thread = threading.Thread(target=asyncio.run, args=(warm_and_run(start),))
    loop_thread.start()
    go.wait()
    start.set()
    deadline = time.time() + deadline_after
    threads = []
    for thread in range(settings.threads):
        name = f"p{process}-sync{thread}"
        tallies[name] = Tally(settings.stall_after)
        threads.append(threading.Thread(target=sync_writer, args=(
            store, name, batches, deadline, tallies[name], settings)))
    for worker in threads:
        worker.start()
    for worker in threads:
        worker.join()
    threads_done.set()
    loop_thread.join()
    store.close()
    results.put({name: vars(tally) for name, tally in tallies.items()})


def killer(server: ChurnServer, share: float, stop: threading.Event, kills: list[int]) -> None:
    """Kill ``share`` of the writers' connections (at least one) every 20-100 ms."""
    while not stop.wait(random.uniform(0.02, 0.1)):
        kills[0] += server.kill_connections(share)


def _numbers(contents: Sequence[str]) -> list[tuple[int, int]]:
    numbers = []
    for content in contents:
        number, _, part = content.partition(":")
        numbers.append((int(number), int(part)) if number.isdigit() and part.isdigit()
                       else (-1, -1))
    return numbers


def _listed(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def find_problems(stored: Mapping[str, Sequence[str]], done: Mapping[str, int]
                  ) -> list[str]:
    """What is wrong with each session: it must hold its batches 0..done-1, each whole, once,
    in order.

    A whole batch ``done`` may follow: the deadline can cut short the read that would
    have told its writer it was stored.

    Args:
        stored: Each session's record contents (``"<batch>:<part>"``), in the store's order.
        done: How many batches each session's writer saw stored.

    Returns:
        One line per session that is wrong, naming its lost, torn, duplicated and
        out-of-order batches; empty when all is right.
    """
    problems = []
    for session, count in done.items():
        found = list(stored.get(session, []))
        expected = [f"{number}:{part}" for number in range(count) for part in range(PARTS)]
        cut_short = [f"{count}:{part}" for part in range(PARTS)]
        if found[:len(expected)] == expected and found[len(expected):] in ([], cut_short):
            continue
        numbers = _numbers(found)
        copies = Counter(numbers)
        wanted = range(count + 1)
        lost = [number for number in range(count)
                if all(copies[(number, part)] == 0 for part in range(PARTS))]
        torn = [number for number in wanted
                if len({copies[(number, part)] for part in range(PARTS)}) > 1]
        duplicated = [number for number in wanted
                      if min(copies[(number, part)] for part in range(PARTS)) > 1]
        strangers = sorted({number for number, _ in numbers if number not in wanted})
        firsts = list(dict.fromkeys(numbers))
        differs = next((position for position, (got, want)
                        in enumerate(zip(found, expected, strict=False)) if got != want),
                       min(len(found), len(expected)))
        kinds = [f"{name} {_listed(batches)}" for name, batches in (
            ("lost", lost), ("torn", torn), ("duplicated", duplicated),
            ("not written", strangers)) if batches]
        if firsts != sorted(firsts):
            kinds.append("out of order")
        problems.append(f"{session}: {len(found)} records, expected {len(expected)}; "
                        f"first difference at {differs}; " + "; ".join(kinds or ["extra"]))
    return problems


@dataclass
class PhaseResult:
    """What a phase measured."""

    elapsed: float
    batches: int
    problems: list[str]


def _receive(messages: Queue[Any], processes: Sequence[BaseProcess], seconds: float,
             what: str) -> list[Any]:
    """One message from each writer process, failing early if one ended without sending it."""
    received: list[Any] = []
    deadline = time.monotonic() + seconds
    while len(received) < len(processes):
        try:
            received.append(messages.get(timeout=0.5))
        except queue.Empty:
            ended = [process.exitcode for process in processes if process.exitcode is not None]
            if (any(code != 0 for code in ended) or len(ended) == len(processes)
                    or time.monotonic() > deadline):
                for process in processes:
                    process.kill()
                raise RuntimeError(f"writer processes did not {what} (exit codes {ended}, "
                                   f"{len(received)} of {len(processes)} answered)") from None
    return received


def run_phase(server: ChurnServer, phase: str, writers: Writers, settings: ChurnSettings,
              batches: int, deadline: float, kill_share: float, target: str) -> PhaseResult:
    """Run one phase (steady, kills or restart) on ``target``, print its report, return it."""
    server.prepare(target)
    context = multiprocessing.get_context("spawn")
    ready: Queue[str] = context.Queue()
    results: Queue[dict[str, dict[str, Any]]] = context.Queue()
    go = context.Event()
    processes = [context.Process(target=writer_process, args=(
        writers, settings, target, process, batches, ready, go, results, deadline))
        for process in range(settings.processes)]
    for process in processes:
        process.start()
    _receive(ready, processes, 120, "warm up")
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
    for reported in _receive(results, processes, deadline + 120, "report"):
        tallies.update(reported)
    elapsed = time.time() - started
    stop.set()
    if helper is not None:
        helper.join()
    for process in processes:
        process.join()

    done: dict[str, int] = {name: tally["done"] for name, tally in tallies.items()}
    errors: Counter[str] = Counter()
    for tally in tallies.values():
        errors.update(tally["errors"])
    # A call that took the pool's timeout while the server was up (not overlapping the
    # window it was down).
    stalls = [took for tally in tallies.values() for start, took in tally["slow_calls"]
              if down is None or start + took < down[0] or start > down[1]]
    total, wanted = sum(done.values()), batches * len(done)
    finished = "finished" if total == wanted else f"NOT finished ({total:,} of {wanted:,})"
    name = f"{phase} {writers.label}".strip()
    print(f"{name:10s} {total:7,} batches in {elapsed:6.2f} s ({finished}); "
          f"longest call {max(t['longest'] for t in tallies.values()):.2f} s; "
          f"calls >= {settings.stall_after:g} s while the server was up: {len(stalls)}"
          + (f"; {kills[0]} connections killed" if phase == "kills" else "")
          + (f"; down {down[1] - down[0]:.1f} s" if down else ""), flush=True)
    if errors:
        print("           errors the writers saw: " + "; ".join(
            f"{count} x {kind!r}" for kind, count in errors.most_common()), flush=True)
    problems = find_problems(server.stored(target, sorted(done)), done)
    print("           verified: nothing lost, torn, duplicated or out of order" if not problems
          else f"           PROBLEMS in {len(problems)} sessions:\n             "
          + "\n             ".join(problems[:10]), flush=True)
    return PhaseResult(elapsed, total, problems)


def churn_parser(description: str, *, batches: int = 1000,
                 phases: str = "steady,kills,restart", kill_share: bool = True
                 ) -> argparse.ArgumentParser:
    """The options every churn script takes; a script adds its own to the parser."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batches", type=int, default=batches, help="per writer (24 writers)")
    parser.add_argument("--deadline", type=float, default=90.0, help="seconds per phase")
    parser.add_argument("--phases", default=phases,
                        help="in this order; repeated phases alternate, so that a machine's "
                             "changing load falls on both")
    if kill_share:
        parser.add_argument("--kill-share", type=float, default=0.1,
                            help="share of the writers' connections killed each time "
                                 "(at least one); 1 kills them all")
    return parser


def run_churn(server: ChurnServer, contenders: Sequence[Writers], options: argparse.Namespace,
              settings: ChurnSettings, headline: str) -> dict[str, list[PhaseResult]]:
    """Run ``options.phases`` for each contender in turn, each phase on a target of its own.

    Prints each phase's report and, for each contender that ran both steady and
    kills, the ratio of their mean times (the target: at most 2x).

    Args:
        server: The private server, started (see :func:`running`).
        contenders: The writers to compare, each phase run once for each, in turn.
        options: ``batches``, ``deadline``, ``phases`` and, where the script offers
            it, ``kill_share``, as :func:`churn_parser` parses them.
        settings: How the writers run.
        headline: The report's first words, e.g. "private server on port 5433".

    Example::

        def open_store(url: str, table: str) -> ChurnStore:
            return get_backend("postgres", conninfo=url, table=table, timeout=10.0)

        options = churn_parser("churn on PostgreSQL").parse_args()
        with running(PrivateServer()) as server:
            run_churn(server, [Writers(partial(open_store, server.url))], options,
                      ChurnSettings(timeout=10.0), f"private server on port {server.port}")

    Returns:
        Each phase's results, keyed by ``"<phase> <label>"`` (the label omitted when empty).
    """
    print(f"{headline}; {settings.processes} processes x ({settings.threads} threads + "
          f"{settings.tasks} async tasks), {options.batches} batches of {PARTS} each",
          flush=True)
    results: dict[str, list[PhaseResult]] = {}
    kill_share = getattr(options, "kill_share", 1.0)
    for number, phase in enumerate(options.phases.split(",")):
        for writers in contenders:
            target = "_".join(filter(None, ("churn", str(number), phase, writers.label)))
            results.setdefault(f"{phase} {writers.label}".strip(), []).append(run_phase(
                server, phase, writers, settings, options.batches, options.deadline,
                kill_share, target))
    for writers in contenders:
        steady = results.get(f"steady {writers.label}".strip())
        kills = results.get(f"kills {writers.label}".strip())
        if steady and kills:
            ratio = (sum(r.elapsed for r in kills) / len(kills)) / (
                sum(r.elapsed for r in steady) / len(steady))
            print(f"{writers.label + ': ' if writers.label else ''}kills / steady (mean times) "
                  f"= {ratio:.2f}x (target <= 2x: {'met' if ratio <= 2 else 'MISSED'})",
                  flush=True)
    return results
