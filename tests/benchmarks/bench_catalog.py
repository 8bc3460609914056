"""The session catalog at scale: a sidebar page, an owner's erasure, the cost of a turn.

Run: .venv/bin/python tests/benchmarks/bench_catalog.py [--sizes 10000 1000000] [--rounds 5]
     [--adk-python PATH] [--adk-sizes 5000 50000]

For each backend in BACKENDS (sqlite and memory now; another plugs in with a
factory) and each size, the store is filled with that many sessions of two
messages each, 100 per owner (so 10,000 owners at 1,000,000 sessions), with
distinct update times. Then, all in this one process:

- **page**: ``list_conversations(backend, owner=X, limit=20)`` (one owner's 20
  newest), median over owners picked at random;
- **erase**: ``erase(backend, owner=X)`` of one owner's 100 sessions (200
  messages), median over owners;
- **turn**: read the newest 20 messages and append two, with the catalog kept
  against the same backend without it (sqlite: the same file layout with the
  triggers that keep the catalog dropped; memory: the catalog's entry not
  kept), interleaved round by round.

The ratios are large size / small size (target: at most 1.3) and with /
without the catalog (target: at most 1.1).

``--adk-python`` names an interpreter where ``google-adk[db]`` and
``aiosqlite`` are installed. google-adk 2.13 cannot share chathistory's
environment (its google-genai caps tenacity below 9.2, which chathistory
needs), so it gets one of its own::

    python3 -m venv /tmp/adk && /tmp/adk/bin/pip install "google-adk[db]" aiosqlite

The script then runs itself there (it needs nothing of chathistory's) to time
Google ADK's ``DatabaseSessionService.list_sessions`` for one user (100
sessions) on SQLite at each of ``--adk-sizes``, next to chathistory's page at
the same sizes, filled the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

PER_OWNER = 100
FILL_CHUNK = 10_000
WINDOW = 20


def records(session: int) -> list[dict[str, Any]]:
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    return [message_to_dict(HumanMessage(f"question of session {session}")),
            message_to_dict(AIMessage(f"a reasonably sized answer for session {session}"))]


def owner_of(session: int) -> str:
    return f"user-{session // PER_OWNER:06d}"


# -- the backends: a factory each (a directory in, a created, empty backend out) ------------

def sqlite_backend(directory: Path, name: str = "catalog") -> Any:
    from chathistory.backends.sqlite import SqliteBackend

    backend = SqliteBackend(SqliteBackend.Config(path=str(directory / f"{name}.sqlite3")))
    backend.create_collection()
    return backend


def memory_backend(directory: Path, name: str = "catalog") -> Any:
    from chathistory.backends.memory import MemoryBackend

    return MemoryBackend()


BACKENDS: dict[str, Callable[[Path], Any]] = {"sqlite": sqlite_backend,
                                              "memory": memory_backend}


def previous_release(kind: str, directory: Path) -> Any | None:
    """The backend on the layout of the release before the catalog, where there is one.

    sqlite: step 0 of its migrations, whose triggers already kept counts and write times.
    """
    if kind != "sqlite":
        return None
    from chathistory.backends.sqlite import SqliteBackend, migrations

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "previous.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        for statement in migrations("message_store")[0]:
            connection.execute(statement)
    return SqliteBackend(SqliteBackend.Config(path=str(path)))  # no create_collection: no upgrade


def without_catalog(kind: str, directory: Path) -> Any:
    """The same backend with the catalog not kept: what a turn costs without it."""
    if kind == "sqlite":
        backend = sqlite_backend(directory, "plain")
        with sqlite3.connect(backend.config.path) as connection:
            for trigger in ("count_insert", "count_delete"):
                connection.execute(f'DROP TRIGGER "message_store_{trigger}"')
        return backend
    if kind == "memory":
        from chathistory.backends.memory import MemoryBackend

        class Uncatalogued(MemoryBackend):
            def _store(self, encoded: Any) -> None:
                for session, texts in encoded.items():
                    self._sessions.setdefault(session, []).extend(texts)

        return Uncatalogued()
    raise SystemExit(f"no catalog-less twin for backend {kind!r}")


def fill(backend: Any, sessions: int) -> float:
    """``sessions`` sessions of two messages, 100 per owner, distinct times; seconds taken."""
    from chathistory.catalog import SessionSummary

    started = time.perf_counter()
    base = datetime.now(UTC) - timedelta(days=400)
    for start in range(0, sessions, FILL_CHUNK):
        numbers = range(start, min(start + FILL_CHUNK, sessions))
        backend.append_many({f"s{number:08d}": records(number) for number in numbers})
        backend.restore_summaries([SessionSummary(
            f"s{number:08d}", owner_of(number), f"Conversation {number}", {},
            base + timedelta(seconds=number), base + timedelta(seconds=number, minutes=5), 0)
            for number in numbers])
    return time.perf_counter() - started


def median_of(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_size(kind: str, sessions: int, rounds: int, directory: Path,
                 whole_owner: bool = False) -> dict[str, float]:
    """Fill, then time one owner's page of 20 (and, ``whole_owner``, of all 100) and erasures."""
    from chathistory import erase, list_conversations

    backend = BACKENDS[kind](directory)
    filled = fill(backend, sessions)
    if kind == "sqlite":  # both sizes start at rest: the fill's WAL written back to the file
        with sqlite3.connect(backend.config.path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    owners = sessions // PER_OWNER
    pick = random.Random(sessions)
    page_times = []
    for _ in range(rounds):
        chosen = owner_of(pick.randrange(owners) * PER_OWNER)
        page_times.append(median_of(partial(list_conversations, backend, owner=chosen,
                                            limit=20), 20))
    whole: list[float] = []
    for _ in range(rounds if whole_owner else 0):
        chosen = owner_of(pick.randrange(owners) * PER_OWNER)
        whole.append(median_of(partial(list_conversations, backend, owner=chosen,
                                       limit=PER_OWNER), 20))
    page = list_conversations(backend, owner=owner_of(0), limit=20)
    assert len(page.summaries) == 20 and page.summaries[0].session_id == f"s{99:08d}"
    erase_times = []
    for owner_number in pick.sample(range(owners), rounds):
        started = time.perf_counter()
        receipt = erase(backend, owner=owner_of(owner_number * PER_OWNER))
        erase_times.append(time.perf_counter() - started)
        assert (receipt.sessions, receipt.messages) == (PER_OWNER, 2 * PER_OWNER), receipt
    backend.close()
    return {"fill_s": filled, "page": statistics.median(page_times),
            "erase": statistics.median(erase_times),
            "all": statistics.median(whole) if whole else float("nan")}


def measure_turns(kind: str, rounds: int, directory: Path) -> dict[str, float]:
    """Seconds per turn: the catalog kept, not kept, and (sqlite) the previous release's layout."""
    contenders = {"kept": BACKENDS[kind](directory / "turn-kept"),
                  "owned": BACKENDS[kind](directory / "turn-owned"),
                  "plain": without_catalog(kind, directory / "turn-plain")}
    previous = previous_release(kind, directory / "turn-previous")
    if previous is not None:
        contenders["previous"] = previous
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for name, backend in contenders.items():
        for session in range(50):
            backend.append(f"t{session}", records(session) * 10)
            if name == "owned":  # each session in its owner's index too
                backend.update_session(f"t{session}", owner=owner_of(session))
    for _ in range(rounds):
        for name, backend in contenders.items():
            started = time.perf_counter()
            for turn in range(4):
                for session in range(50):
                    backend.fetch(f"t{session}", limit=WINDOW)
                    backend.append(f"t{session}", records(turn))
            per_round[name].append((time.perf_counter() - started) / 200)
    for backend in contenders.values():
        backend.close()
    return {name: statistics.median(times) for name, times in per_round.items()}


# -- Google ADK, in the interpreter where it is installed -----------------------------------

def adk_list_sessions(sessions: int, rounds: int, directory: Path) -> dict[str, float]:
    """ADK's DatabaseSessionService on SQLite: ``sessions`` sessions, 100 per user.

    ADK makes its schema and the first session; the rest are inserted in one
    transaction in the very shape ADK wrote the first (its ``create_session``
    commits each one: 22 ms apiece here, 18 minutes for 50,000).
    """
    from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]

    path = directory / f"adk-{sessions}.sqlite3"

    async def create_first() -> None:
        service = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{path}")
        await service.create_session(app_name="bench", user_id=owner_of(0),
                                     session_id=f"s{0:08d}", state={"title": "Conversation 0"})

    async def list_sessions() -> list[float]:
        service = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{path}")
        pick = random.Random(sessions)
        times = []
        for _ in range(rounds):
            user = owner_of(pick.randrange(sessions // PER_OWNER) * PER_OWNER)
            started = time.perf_counter()
            listed = await service.list_sessions(app_name="bench", user_id=user)
            times.append(time.perf_counter() - started)
            assert len(listed.sessions) == PER_OWNER, len(listed.sessions)
        return times

    started = time.perf_counter()
    asyncio.run(create_first())
    with sqlite3.connect(path) as connection:
        (created,) = connection.execute("SELECT create_time FROM sessions").fetchone()
        connection.executemany(
            "INSERT INTO sessions (app_name, user_id, id, state, create_time, update_time) "
            "VALUES ('bench', ?, ?, ?, ?, ?)",
            [(owner_of(number), f"s{number:08d}",
              json.dumps({"title": f"Conversation {number}"}), created, created)
             for number in range(1, sessions)])
        connection.executemany(
            "INSERT OR IGNORE INTO user_states (app_name, user_id, state, update_time) "
            "VALUES ('bench', ?, '{}', ?)",
            [(owner_of(number), created) for number in range(0, sessions, PER_OWNER)])
    filled = time.perf_counter() - started
    return {"fill_s": filled, "list": statistics.median(asyncio.run(list_sessions()))}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--adk-python", default=None,
                        help="An interpreter with google-adk[db] and aiosqlite installed "
                             "(default: this one, if it has them).")
    parser.add_argument("--adk-sizes", type=int, nargs=2, default=[5_000, 50_000])
    parser.add_argument("--turns-only", action="store_true",
                        help="Only the cost of a turn, with and without the catalog.")
    parser.add_argument("--adk-only", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as temporary:
        directory = Path(temporary)
        if options.adk_only is not None:  # the child run in ADK's interpreter
            print(json.dumps(adk_list_sessions(options.adk_only, options.rounds, directory)))
            return
        for kind in options.backends:
            if options.turns_only:
                print(f"{kind}:")
            else:
                small, large = (measure_size(kind, size, options.rounds,
                                             directory / f"{kind}-{size}")
                                for size in options.sizes)
                print(f"{kind}: sizes {options.sizes[0]:,} and {options.sizes[1]:,} sessions "
                      f"(filled in {small['fill_s']:.0f} s and {large['fill_s']:.0f} s)")
                for measure in ("page", "erase"):
                    ratio = large[measure] / small[measure]
                    print(f"  {measure:<6} {small[measure] * 1e3:8.3f} ms  "
                          f"{large[measure] * 1e3:8.3f} ms  ratio {ratio:.2f}")
            turns = measure_turns(kind, options.rounds, directory / f"{kind}-turns")
            print(f"  turn   kept {turns['kept'] * 1e6:.0f} us (with owners "
                  f"{turns['owned'] * 1e6:.0f} us), without the catalog "
                  f"{turns['plain'] * 1e6:.0f} us, ratio {turns['kept'] / turns['plain']:.2f} "
                  f"(with owners {turns['owned'] / turns['plain']:.2f})")
            if "previous" in turns:
                print(f"         the previous release's layout (counts and write times only) "
                      f"{turns['previous'] * 1e6:.0f} us: kept / previous "
                      f"{turns['kept'] / turns['previous']:.2f} (with owners "
                      f"{turns['owned'] / turns['previous']:.2f})")
        if options.turns_only:
            return
        if options.adk_python is None and _installed("google.adk"):
            options.adk_python = sys.executable
        if options.adk_python:
            print("Google ADK DatabaseSessionService.list_sessions (one user, 100 sessions) "
                  "on SQLite, against chathistory's page of 20 on sqlite, same sizes:")
            for size in options.adk_sizes:
                child = subprocess.run(
                    [options.adk_python, __file__, "--adk-only", str(size),
                     "--rounds", str(options.rounds)],
                    capture_output=True, text=True, check=True)
                adk = json.loads(child.stdout.strip().splitlines()[-1])
                ours = measure_size("sqlite", size, options.rounds,
                                    directory / f"sqlite-adk-{size}", whole_owner=True)
                print(f"  {size:>7,} sessions: ADK {adk['list'] * 1e3:8.3f} ms for all 100; "
                      f"chathistory {ours['page'] * 1e3:.3f} ms for 20 (ratio "
                      f"{adk['list'] / ours['page']:.1f}x), {ours['all'] * 1e3:.3f} ms for all "
                      f"100 (ratio {adk['list'] / ours['all']:.1f}x)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
