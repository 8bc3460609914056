"""Sessions as data: `copy` against the loop a user would write, and listing/pruning costs.

Run: .venv/bin/python tests/benchmarks/bench_transfer.py [--sessions 10000] [--messages 20]
     [--postgres URL] [--redis URL]

1. Copy SESSIONS sessions of MESSAGES messages, sqlite -> postgres and
   postgres -> redis, with ``chathistory.transfer.copy_sessions`` and with the
   naive loop (for each session, ``get_messages()`` then ``add_messages()``
   through ``ChatHistory``, each side one shared backend). Reported:
   messages per second for both, and the ratio (target >= 10x).
2. A page of ``list_sessions(limit=100)`` and a ``delete_sessions_before``
   that deletes nothing, on 2,000 sessions of 10 messages and on 2,000
   sessions of 100, on sqlite and postgres (target: the second at most 1.5x
   the first).

PostgreSQL contenders use a schema of their own, and Redis ones a key prefix
of their own; both are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

from chathistory import ChatHistory, get_backend
from chathistory.backend import Backend
from chathistory.capabilities import CopiesInBulk, ListsSessions, PrunesSessions
from chathistory.transfer import copy_sessions, count_records

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a cutoff no session is older than


def records(session: int, count: int) -> list[dict[str, Any]]:
    made = []
    for number in range(count):
        text = f"session {session}, message {number}: a reply of a realistic length, give or take"
        message = HumanMessage(text) if number % 2 == 0 else AIMessage(text)
        made.append(message_to_dict(message))
    return made


def fill(backend: Backend, sessions: int, per_session: int, prefix: str = "s") -> list[str]:
    backend.create_collection()
    ids = [f"{prefix}{number:06d}" for number in range(sessions)]
    for start in range(0, sessions, 500):
        batch = {session_id: records(start + offset, per_session)
                 for offset, session_id in enumerate(ids[start:start + 500])}
        if isinstance(backend, CopiesInBulk):
            backend.append_many(batch)
        else:
            for session_id, stored in batch.items():
                backend.append(session_id, stored)
    return ids


@contextmanager
def postgres(url: str) -> Iterator[Callable[[], Backend]]:
    import psycopg

    schema = f"bench_transfer_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    made: list[Backend] = []

    def make() -> Backend:
        backend = get_backend("postgres", conninfo=url, schema=schema,
                              table=f"t{len(made)}")
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            backend.close()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def redis(url: str) -> Iterator[Callable[[], Backend]]:
    import redis as redis_py

    prefix = f"bench_transfer_{os.getpid()}_{uuid.uuid4().hex[:6]}_"
    made: list[Backend] = []

    def make() -> Backend:
        backend = get_backend("redis", url=url, key_prefix=f"{prefix}{len(made)}_")
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            backend.close()
        client = redis_py.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


def naive_copy(source: Backend, target: Backend, ids: list[str]) -> None:
    for session_id in ids:
        messages = ChatHistory(session_id, backend=source).get_messages()
        ChatHistory(session_id, backend=target).add_messages(messages)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def compare_copy(label: str, source: Backend, make_target: Callable[[], Backend],
                 ids: list[str], messages: int) -> None:
    ours_target, naive_target = make_target(), make_target()
    ours_target.create_collection()
    naive_target.create_collection()
    ours = timed(lambda: copy_sessions(source, ours_target, ids))
    naive = timed(lambda: naive_copy(source, naive_target, ids))
    assert sum(count_records(ours_target, ids).values()) == messages
    assert sum(count_records(naive_target, ids).values()) == messages
    bulk = isinstance(source, CopiesInBulk) and isinstance(ours_target, CopiesInBulk)
    note = "" if bulk else "  [no bulk capability: one session per round trip]"
    print(f"{label}: copy {messages / ours:,.0f} msg/s ({ours:.1f} s), naive loop "
          f"{messages / naive:,.0f} msg/s ({naive:.1f} s): {naive / ours:.1f}x (target >= 10x)"
          f"{note}")


def listing_costs(label: str, make: Callable[[], Backend]) -> None:
    times: dict[int, tuple[float, float]] = {}
    for per_session in (10, 100):
        backend = make()
        if not isinstance(backend, ListsSessions) or not isinstance(backend, PrunesSessions):
            print(f"{label}: does not list or prune sessions; skipped")
            return
        fill(backend, 2000, per_session)
        pages, prunes = [], []
        for _ in range(30):
            pages.append(timed(lambda b=backend: b.list_sessions(after="s000500", limit=100)))
            prunes.append(timed(lambda b=backend: b.delete_sessions_before(EPOCH)))
        times[per_session] = (statistics.median(pages), statistics.median(prunes))
    (page10, prune10), (page100, prune100) = times[10], times[100]
    print(f"{label}: a page of 100 sessions {page10 * 1e3:.2f} ms -> {page100 * 1e3:.2f} ms "
          f"({page100 / page10:.2f}x), a prune deleting nothing {prune10 * 1e3:.2f} ms -> "
          f"{prune100 * 1e3:.2f} ms ({prune100 / prune10:.2f}x), 10 -> 100 messages per "
          "session (target <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20, help="per session")
    parser.add_argument("--postgres", default=os.environ.get("CHATHISTORY_POSTGRES_URL",
                                                             DEFAULT_POSTGRES))
    parser.add_argument("--redis", default=os.environ.get("CHATHISTORY_REDIS_URL",
                                                          DEFAULT_REDIS))
    arguments = parser.parse_args()
    total = arguments.sessions * arguments.messages
    print(f"{arguments.sessions:,} sessions x {arguments.messages} messages = {total:,}\n")
    with tempfile.TemporaryDirectory() as directory, postgres(arguments.postgres) as make_pg, \
            redis(arguments.redis) as make_redis:
        sqlite_source = get_backend("sqlite", path=str(Path(directory) / "source.sqlite3"))
        ids = fill(sqlite_source, arguments.sessions, arguments.messages)
        compare_copy("sqlite -> postgres", sqlite_source, make_pg, ids, total)
        pg_source = make_pg()
        copy_sessions(sqlite_source, pg_source, ids)
        compare_copy("postgres -> redis", pg_source, make_redis, ids, total)
        sqlite_source.close()
        counter = iter(range(100))
        listing_costs("sqlite", lambda: get_backend(
            "sqlite", path=str(Path(directory) / f"listing-{next(counter)}.sqlite3")))
        listing_costs("postgres", make_pg)


if __name__ == "__main__":
    main()
