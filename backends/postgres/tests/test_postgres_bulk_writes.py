"""append_many's COPY: exactly the records given, all or nothing, ordered, counted, not repeated.

The capability itself is tested by BackendContract (test_postgres_contract.py),
in both layouts; here is what is particular to writing with COPY in a transaction.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from chathistory_postgres import PostgresBackend
from langchain_core.messages import HumanMessage, message_to_dict
from psycopg import sql

from chathistory import BackendUnavailableError, ChatHistoryError, RecordError
from chathistory.testing import numbered_records, wait_until

if TYPE_CHECKING:
    from conftest import PrivateCluster


@pytest.fixture
def backend(postgres_url: str, postgres_schema: str, table_name: str
            ) -> Iterator[PostgresBackend]:
    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name, max_size=4)
    backend.create_collection()
    yield backend
    backend.close()


@pytest.fixture
def langchain_backend(postgres_url: str, postgres_schema: str, table_name: str
                      ) -> Iterator[PostgresBackend]:
    backend = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                           table=table_name, layout="langchain_postgres")
    backend.create_collection()
    yield backend
    backend.close()


def _contents(backend: PostgresBackend, session_id: str) -> list[str]:
    return [record["data"]["content"] for record in backend.fetch(session_id)]


def test_every_record_comes_back_exactly(backend: PostgresBackend,
                                         admin: psycopg.Connection[Any]) -> None:
    # What COPY's text format escapes (tab, newline, backslash), what jsonb cannot
    # hold as an object (NUL), and floats jsonb would print as integers.
    awkward = [
        message_to_dict(HumanMessage("tab\there, newline\nthere, back\\slash, \\N, \\.")),
        message_to_dict(HumanMessage("no nul, a literal \\u0000 and 1e+300 text")),
        {"type": "human", "data": {"content": "a\x00b", "big": 1e300, "n": 10**40}},
        {"type": "ai", "data": {"content": "", "huge": 1e300, "neg": -2.5e200, "f": 1e16}},
        message_to_dict(HumanMessage("é 中 😀")),
    ]
    ids = ["tab\tid", "new\nline", "back\\slash", "\\N", "plain"]
    sync_half = {session_id: awkward for session_id in ids[:3]}
    async_half = {session_id: awkward for session_id in ids[3:]}
    backend.append_many(sync_half)
    asyncio.run(backend.aappend_many(async_half))
    assert backend.fetch_many(ids) == {session_id: awkward for session_id in ids}
    kinds = [row[0] for row in admin.execute(sql.SQL(
        "SELECT json_typeof(message::json) FROM {} WHERE session_id = 'plain' ORDER BY id").format(
            sql.SQL(backend.statements.qualified_table)))]
    assert kinds == ["object", "object", "string", "object", "object"]
    for record in backend.fetch("plain"):
        for value in record["data"].values():
            if isinstance(value, float):
                assert type(value) is float


def test_rows_follow_the_batch_order(backend: PostgresBackend,
                                     admin: psycopg.Connection[Any]) -> None:
    backend.append_many({"z": numbered_records(2, prefix="z"), "a": numbered_records(2)})
    rows = admin.execute(sql.SQL("SELECT session_id, message->'data'->>'content' FROM {} "
                                 "ORDER BY id").format(
        sql.SQL(backend.statements.qualified_table))).fetchall()
    assert [session for session, _ in rows] == ["z", "z", "a", "a"]
    assert [content for _, content in rows] == [
        r["data"]["content"] for r in numbered_records(2, prefix="z") + numbered_records(2)]


def test_a_server_error_midway_leaves_nothing_written(backend: PostgresBackend) -> None:
    # The second session's id is too long for the (session_id, id) index: the server
    # refuses its rows after it took the first session's; nothing of either stays.
    too_long = secrets.token_urlsafe(8000)  # random: the index cannot compress it
    batches = {"first": numbered_records(3), too_long: numbered_records(1)}
    with pytest.raises(ChatHistoryError, match="index"):
        backend.append_many(batches)
    with pytest.raises(ChatHistoryError, match="index"):
        asyncio.run(backend.aappend_many(batches))
    assert backend.fetch("first") == []
    assert backend.list_sessions() == []
    backend.append_many({"first": numbered_records(1)})  # the connection is fine afterwards
    assert backend.fetch("first") == numbered_records(1)


def test_counts_and_write_times_follow_copy(backend: PostgresBackend) -> None:
    before = datetime.now(UTC)
    backend.append_many({"a": numbered_records(3), "b": numbered_records(1), "c": []})
    asyncio.run(backend.aappend_many({"a": numbered_records(2, prefix="n"),
                                      "d": numbered_records(4)}))
    after = datetime.now(UTC)
    assert [(i.session_id, i.messages) for i in backend.list_sessions()] == [
        ("a", 5), ("b", 1), ("d", 4)]
    for session_id in ("a", "b", "d"):
        written = backend.last_write(session_id)
        assert written is not None and before <= written <= after
    assert backend.last_write("c") is None


def test_the_langchain_layout_refuses_nul_with_nothing_written(
    langchain_backend: PostgresBackend
) -> None:
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    nul = {"type": "human", "data": {"content": "a\x00b"}}
    batches = {one: numbered_records(2), two: [numbered_records(1)[0], nul]}
    with pytest.raises(RecordError, match="NUL"):
        langchain_backend.append_many(batches)
    with pytest.raises(RecordError, match="NUL"):
        asyncio.run(langchain_backend.aappend_many(batches))
    assert langchain_backend.fetch_many([one, two]) == {}
    langchain_backend.append_many({one.upper(): numbered_records(2)})
    asyncio.run(langchain_backend.aappend_many({two: numbered_records(1)}))
    assert langchain_backend.fetch_many([one, two]) == {
        one: numbered_records(2), two: numbered_records(1)}
    assert [(i.session_id, i.messages) for i in langchain_backend.list_sessions()] == sorted(
        [(one, 2), (two, 1)])


def test_concurrent_bulk_writers_keep_each_batch_whole_and_in_order(
    backend: PostgresBackend, postgres_url: str, postgres_schema: str, table_name: str
) -> None:
    # Writers of overlapping sessions, naming them in different orders, with
    # single appends among them: no deadlock reaches them, no batch is split.
    sessions, threads, batches = ["a", "b", "c", "d"], 4, 8
    errors: list[str] = []

    def batch(name: int, number: int, order: list[str]) -> dict[str, list[dict[str, Any]]]:
        return {session: [message_to_dict(HumanMessage(f"w{name}-b{number}-{part}"))
                          for part in range(2)] for session in order}

    def writer(name: int) -> None:
        shuffler = random.Random(name)
        try:
            for number in range(batches):
                order = shuffler.sample(sessions, k=len(sessions))
                if name == 0:
                    backend.append(order[0], batch(name, number, order[:1])[order[0]])
                else:
                    backend.append_many(batch(name, number, order))
        except Exception as exc:  # reported below
            errors.append(f"w{name}: {type(exc).__name__}: {exc}")

    def async_writer(name: int) -> None:
        other = PostgresBackend.from_options(conninfo=postgres_url, schema=postgres_schema,
                                             table=table_name)

        async def run() -> None:
            shuffler = random.Random(name)
            for number in range(batches):
                await other.aappend_many(batch(name, number,
                                               shuffler.sample(sessions, k=len(sessions))))
            await other.aclose()

        try:
            asyncio.run(run())
        except Exception as exc:  # reported below
            errors.append(f"w{name}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=writer, args=(name,)) for name in range(threads)]
    workers.append(threading.Thread(target=async_writer, args=(threads,)))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    for session in sessions:
        contents = _contents(backend, session)
        for start in range(0, len(contents), 2):
            first, second = contents[start:start + 2]
            assert first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0], "a batch was split"
        for name in range(1, threads + 1):
            assert [text for text in contents if text.startswith(f"w{name}-")] == [
                f"w{name}-b{number}-{part}" for number in range(batches) for part in range(2)]
    counted = {info.session_id: info.messages for info in backend.list_sessions()}
    assert counted == {session: len(_contents(backend, session)) for session in sessions}



def test_a_bulk_write_beyond_the_servers_locks_says_what_to_do_and_writes_nothing(
    private_postgres: PrivateCluster
) -> None:
    # Each session of a bulk write is locked until its commit: a private server with few
    # lock slots runs out of them (PostgreSQL's "out of shared memory").
    with psycopg.connect(private_postgres.url, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET max_locks_per_transaction = 10")
        admin.execute("ALTER SYSTEM SET max_connections = 10")
    private_postgres.restart()
    backend = PostgresBackend.from_options(conninfo=private_postgres.url, min_size=0)
    try:
        backend.create_collection()
        batches = {f"s{number}": numbered_records(1) for number in range(5000)}
        with pytest.raises(BackendUnavailableError,
                           match=r"out of shared memory.*fewer sessions per call"):
            backend.append_many(batches)
        assert backend.list_sessions() == []
        backend.append_many(dict(list(batches.items())[:10]))  # a smaller call succeeds
        assert len(backend.list_sessions()) == 10
    finally:
        backend.close()

@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_lost_connection_during_the_write_is_not_repeated(
    backend: PostgresBackend, admin: psycopg.Connection[Any], postgres_url: str,
    use_async: bool
) -> None:
    # Another transaction holds session "x"'s lock (the backend's own statement), so
    # the write waits; its connection is then terminated. A repeat would wait again
    # (the lock is still held) instead of returning the error.
    holder = psycopg.connect(postgres_url, autocommit=False)
    try:
        holder.execute(backend.statements.lock_sessions, (["x"],))
        outcome: list[BaseException | None] = []

        async def append_then_close() -> None:
            try:
                await backend.aappend_many({"x": numbered_records(2)})
            finally:
                await backend.aclose()  # the pool's loop ends: close it in that loop

        def write() -> None:
            try:
                if use_async:
                    asyncio.run(append_then_close())
                else:
                    backend.append_many({"x": numbered_records(2)})
                outcome.append(None)
            except BaseException as exc:  # checked below
                outcome.append(exc)

        # Only this test's connection: the statement names this table's lock space.
        waiting = ("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                   "AND wait_event = 'advisory' AND query = %s")
        mine = (backend.statements.lock_sessions.replace("%s", "$1"),)  # as psycopg sends it
        thread = threading.Thread(target=write)
        thread.start()
        wait_until(lambda: admin.execute(waiting, mine).fetchall(),
                   "the write waits for the lock", seconds=30)
        for (pid,) in admin.execute(waiting, mine).fetchall():
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(timeout=30)
        assert not thread.is_alive(), "the write was repeated (it waits for the lock again)"
        (error,) = outcome
        assert isinstance(error, BackendUnavailableError), error
        assert "stored entirely or not at all" in str(error)
    finally:
        holder.close()
    assert backend.fetch("x") == []
