"""Sessions as data: `copy` against the loop a user would write, and listing/pruning costs.

Run: .venv/bin/python tests/benchmarks/bench_transfer.py [--sessions 10000] [--messages 20]
     [--postgres URL] [--redis URL]

1. Copy SESSIONS sessions of MESSAGES messages, sqlite -> postgres and
   postgres -> redis, with ``chathistory.transfer.copy_sessions`` and with the
   naive loop (for each session, ``get_messages()`` then ``add_messages()``
   through ``ChatHistory``, each side one shared backend). Reported:
   messages per second for both, and the ratio (target >= 10x). For sqlite ->
   postgres, also the raw floor: sqlite3 and psycopg alone doing the same job
   (a SELECT of the JSON text per chunk of sessions, a COPY of it into a bare
   table of the same columns, no JSON decoding), one chunk after the other
   and reading the next chunk while writing, and into our own layout, as
   msg/s and their ratio to the naive loop: what any copy through the drivers
   can reach. For postgres -> redis, the same with psycopg and a redis-py
   pipeline of RPUSH.
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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
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
CHUNK = 200  # sessions per read and per write, as copy_sessions takes them


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
                 ids: list[str], messages: int) -> float:
    """Print the copy's and the naive loop's rates; return the naive loop's seconds."""
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
    return naive


def read_ahead(read: Callable[[list[str]], list[tuple[str, str]]],
               write: Callable[[list[tuple[str, str]]], None], parts: list[list[str]]) -> None:
    """Each part read, then written, the next part read by a thread meanwhile (as
    ``copy_sessions`` does), with the drivers alone."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(read, parts[0])
        for following in [*parts[1:], None]:
            rows = upcoming.result()
            if following is not None:
                upcoming = reader.submit(read, following)
            write(rows)


def raw_floor(sqlite_path: Path, url: str, ids: list[str], messages: int, naive: float,
              ours: Backend, chunk: int = CHUNK) -> None:
    """The raw drivers doing the sqlite -> postgres copy without chathistory: the floor.

    Per chunk of sessions, as ``copy_sessions`` reads them: one sqlite3 SELECT of
    the records' JSON text, one psycopg COPY of those texts (no JSON decoding or
    re-encoding) into a bare table of the same columns and (session_id, id)
    index, without the sessions table and its triggers, and nothing read back.
    Run twice: one chunk after the other, and with the next chunk read (by a
    thread with its own sqlite3 connection) while this one is written, as
    ``copy_sessions`` does. Then once more reading ahead into ``ours``, an empty
    table of the backend's own layout: what the layout itself (its sessions
    table and triggers) costs the drivers.
    """
    import sqlite3

    import psycopg
    from psycopg import sql

    schema = f"bench_floor_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    table = sql.Identifier(schema, "raw")
    target = psycopg.connect(url, autocommit=True)
    parts = [ids[start:start + chunk] for start in range(0, len(ids), chunk)]
    readers = threading.local()

    def read(part: list[str]) -> list[tuple[str, str]]:
        if not hasattr(readers, "connection"):
            readers.connection = sqlite3.connect(sqlite_path)
        return readers.connection.execute(  # type: ignore[no-any-return]
            "SELECT session_id, message FROM message_store WHERE session_id IN "
            f"({','.join('?' * len(part))}) ORDER BY session_id, id", part).fetchall()

    def write(rows: list[tuple[str, str]]) -> None:
        with target.cursor() as cursor, cursor.copy(copy_rows) as copy:
            for row in rows:
                copy.write_row(row)

    def one_after_the_other() -> None:
        for part in parts:
            write(read(part))

    def reading_ahead() -> None:
        read_ahead(read, write, parts)

    try:
        target.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        target.execute(sql.SQL(
            "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "session_id text NOT NULL, message jsonb NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())").format(table))
        target.execute(sql.SQL("CREATE INDEX ON {} (session_id, id)").format(table))
        ours.create_collection()
        our_table = sql.Identifier(ours.config.db_schema, ours.config.table)  # type: ignore[attr-defined]
        for label, work, into in (
                ("one chunk after the other, bare table", one_after_the_other, table),
                ("reading the next chunk while writing, bare table", reading_ahead, table),
                ("reading the next chunk while writing, our layout", reading_ahead, our_table)):
            copy_rows = sql.SQL("COPY {} (session_id, message) FROM STDIN").format(into)
            seconds = timed(work)
            row = target.execute(sql.SQL("SELECT count(*) FROM {}").format(into)).fetchone()
            assert row is not None and row[0] == messages
            target.execute(sql.SQL("TRUNCATE {}").format(into))
            print(f"sqlite -> postgres raw floor, {label} (sqlite3 SELECT + psycopg COPY, no "
                  f"JSON decoding): {messages / seconds:,.0f} msg/s "
                  f"({seconds:.1f} s): {naive / seconds:.1f}x the naive loop")
    finally:
        target.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
        target.close()


def raw_redis_floor(source: Backend, url: str, redis_url: str, ids: list[str], messages: int,
                    naive: float, chunk: int = CHUNK) -> None:
    """The raw drivers doing the postgres -> redis copy: the floor for that path.

    Per chunk of sessions: one psycopg SELECT of the records' JSON text from
    the source's table, one redis-py pipeline of an RPUSH per session (no JSON
    decoding, no sessions index), the next chunk read while this one is written.
    """
    import psycopg
    import redis as redis_py
    from psycopg import sql

    prefix = f"bench_floor_{os.getpid()}_{uuid.uuid4().hex[:6]}:"
    table = sql.Identifier(source.config.db_schema, source.config.table)  # type: ignore[attr-defined]
    select = sql.SQL("SELECT session_id, message::text FROM {} WHERE session_id = ANY(%s) "
                     "ORDER BY session_id, id").format(table)
    reader = psycopg.connect(url, autocommit=True)
    client = redis_py.Redis.from_url(redis_url)
    parts = [ids[start:start + chunk] for start in range(0, len(ids), chunk)]

    def read(part: list[str]) -> list[tuple[str, str]]:
        return reader.execute(select, (part,)).fetchall()

    def write(rows: list[tuple[str, str]]) -> None:
        sessions: dict[str, list[str]] = {}
        for session_id, text in rows:
            sessions.setdefault(session_id, []).append(text)
        pipe = client.pipeline(transaction=False)
        for session_id, texts in sessions.items():
            pipe.rpush(prefix + session_id, *texts)
        pipe.execute()

    try:
        seconds = timed(partial(read_ahead, read, write, parts))
        pipe = client.pipeline(transaction=False)
        for session_id in ids:
            pipe.llen(prefix + session_id)
        assert sum(pipe.execute()) == messages
        print(f"postgres -> redis raw floor, reading the next chunk while writing (psycopg "
              f"SELECT + redis-py pipelined RPUSH, no JSON decoding, no index): "
              f"{messages / seconds:,.0f} msg/s ({seconds:.1f} s): {naive / seconds:.1f}x "
              "the naive loop")
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
        reader.close()


def listing_costs(label: str, make: Callable[[], Backend], samples: int = 200) -> None:
    """A page and an empty prune on sessions of 10 and of 100 messages, measured in turns.

    Both stores are filled first, then measured alternately, so that what the
    machine does meanwhile (a server's autovacuum after the fill, say) falls
    on both sizes alike.
    """
    stores: dict[int, Backend] = {}
    for per_session in (10, 100):
        backend = make()
        if not isinstance(backend, ListsSessions) or not isinstance(backend, PrunesSessions):
            print(f"{label}: does not list or prune sessions; skipped")
            return
        fill(backend, 2000, per_session)
        stores[per_session] = backend
    pages: dict[int, list[float]] = {10: [], 100: []}
    prunes: dict[int, list[float]] = {10: [], 100: []}
    for _ in range(samples):
        for per_session, backend in stores.items():
            assert isinstance(backend, ListsSessions) and isinstance(backend, PrunesSessions)
            pages[per_session].append(timed(partial(backend.list_sessions, after="s000500",
                                                    limit=100)))
            prunes[per_session].append(timed(partial(backend.delete_sessions_before, EPOCH)))
    page10, page100 = statistics.median(pages[10]), statistics.median(pages[100])
    prune10, prune100 = statistics.median(prunes[10]), statistics.median(prunes[100])
    print(f"{label}: a page of 100 sessions {page10 * 1e3:.2f} ms -> {page100 * 1e3:.2f} ms "
          f"({page100 / page10:.2f}x), a prune deleting nothing {prune10 * 1e3:.2f} ms -> "
          f"{prune100 * 1e3:.2f} ms ({prune100 / prune10:.2f}x), 10 -> 100 messages per "
          f"session, medians of {samples} taken alternately (target <= 1.5x)")


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
        naive = compare_copy("sqlite -> postgres", sqlite_source, make_pg, ids, total)
        raw_floor(Path(directory) / "source.sqlite3", arguments.postgres, ids, total, naive,
                  make_pg())
        pg_source = make_pg()
        copy_sessions(sqlite_source, pg_source, ids)
        naive = compare_copy("postgres -> redis", pg_source, make_redis, ids, total)
        raw_redis_floor(pg_source, arguments.postgres, arguments.redis, ids, total, naive)
        sqlite_source.close()
        counter = iter(range(100))
        listing_costs("sqlite", lambda: get_backend(
            "sqlite", path=str(Path(directory) / f"listing-{next(counter)}.sqlite3")))
        listing_costs("postgres", make_pg)


if __name__ == "__main__":
    main()
