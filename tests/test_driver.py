"""The core's runner: operations written once, run sync and async, retried, logged, traced."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from chathistory import BackendUnavailableError, ChatHistoryError
from chathistory.backend import BaseBackend, ensure_collection
from chathistory.backends.memory import MemoryBackend
from chathistory.backends.sqlite import SqliteBackend
from chathistory.driver import Call, Driver, Operation, Phase, Runner, failed_while, operation
from chathistory.records import decode_record, encode_record
from chathistory.testing import BackendContract, await_until, wait_until

SECRET = "the-content-no-log-may-hold"


def secret_records(count: int = 2) -> list[dict[str, Any]]:
    return [{"type": "human", "data": {"content": f"{SECRET} {n}", "type": "human"}}
            for n in range(count)]


# -- a native async driver over aiosqlite: one "pool" (a connection) per event loop --------


class AioSqliteDriver(Driver[sqlite3.Connection, aiosqlite.Connection, aiosqlite.Connection]):
    """A real async driver, small enough to watch the event-loop policy at work."""

    native_async = True

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.opened: list[tuple[asyncio.AbstractEventLoop, aiosqlite.Connection]] = []
        self.closed: list[aiosqlite.Connection] = []
        self.sent = 0

    @contextmanager
    def connection(self, call: Call) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def send(self, connection: sqlite3.Connection, request: Any) -> Any:
        self.sent += 1
        return connection.execute(*request).fetchall()

    async def open_pool(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None,
                                             timeout=self.timeout)
        self.opened.append((asyncio.get_running_loop(), connection))
        return connection

    @asynccontextmanager
    async def async_connection(self, pool: aiosqlite.Connection, call: Call
                               ) -> AsyncIterator[aiosqlite.Connection]:
        yield pool

    async def asend(self, connection: aiosqlite.Connection, request: Any) -> Any:
        self.sent += 1
        async with connection.execute(*request) as cursor:
            return await cursor.fetchall()

    async def close_pool(self, pool: aiosqlite.Connection) -> None:
        await pool.close()
        self.closed.append(pool)

    def translate(self, error: BaseException, call: Call) -> BaseException:
        if isinstance(error, sqlite3.Error):
            return ChatHistoryError(f"backend {call.backend!r} failed to {call.operation}: "
                                    f"{type(error).__name__}")
        return error


class Notes(BaseBackend):
    """A tiny backend written once over :class:`AioSqliteDriver`."""

    name = "notes"

    def __init__(self, path: str) -> None:
        super().__init__(BaseBackend.Config())
        self.driver = AioSqliteDriver(path)
        self.runner = Runner(self, self.driver)

    @operation(write=True)
    def create_collection(self) -> Operation[None]:
        yield ("CREATE TABLE IF NOT EXISTS notes (session_id TEXT, message TEXT)",)

    @operation(write=True)
    def append(self, session_id: str, records: Any) -> Operation[None]:
        for record in records:
            yield ("INSERT INTO notes VALUES (?, ?)", (session_id, record["data"]["content"]))

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None) -> Operation[list[Any]]:
        if limit == 0:
            return []
        try:
            rows = yield ("SELECT message FROM notes WHERE session_id = ?", (session_id,))
        except sqlite3.OperationalError:  # thrown into the operation: it may answer it
            return []
        return [row[0] for row in rows]

    @operation(write=True)
    def clear(self, session_id: str) -> Operation[None]:
        yield ("DELETE FROM notes WHERE session_id = ?", (session_id,))

    acreate_collection = create_collection.async_twin
    aappend = append.async_twin
    afetch = fetch.async_twin
    aclear = clear.async_twin


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notes]:
    backend = Notes(str(tmp_path / "notes.sqlite3"))
    backend.create_collection()
    yield backend
    backend.close()


def test_one_operation_runs_sync_and_async_alike(notes: Notes) -> None:
    notes.append("s", secret_records(2))

    async def read() -> list[Any]:
        try:
            return await notes.afetch("s")
        finally:
            await notes.aclose()

    assert asyncio.run(read()) == notes.fetch("s") == [f"{SECRET} 0", f"{SECRET} 1"]


def test_an_operation_that_returns_before_yielding_takes_no_connection(notes: Notes) -> None:
    sent = notes.driver.sent
    assert notes.fetch("s", limit=0) == []
    assert asyncio.run(notes.afetch("s", limit=0)) == []
    assert notes.driver.sent == sent and notes.driver.opened == []


def test_a_driver_error_is_thrown_into_the_operation_which_may_answer_it(tmp_path: Path
                                                                         ) -> None:
    backend = Notes(str(tmp_path / "empty.sqlite3"))  # no table: the SELECT fails
    assert backend.fetch("s") == []
    with pytest.raises(ChatHistoryError, match="failed to append: OperationalError"):
        backend.append("s", secret_records(1))  # not answered: translated


def test_each_event_loop_gets_its_own_pool_closed_when_the_loop_ends(notes: Notes) -> None:
    notes.append("s", secret_records(1))
    for _ in range(2):  # two loops, one after the other, neither calls aclose()
        assert asyncio.run(notes.afetch("s")) == [f"{SECRET} 0"]
    (first_loop, first), (second_loop, second) = notes.driver.opened
    assert first_loop is not second_loop and first is not second
    # asyncio.run finalized each loop's async generators, which closed its pool in its loop.
    assert notes.driver.closed == [first, second]


def test_two_loops_running_at_once_use_two_pools(notes: Notes) -> None:
    notes.append("s", secret_records(1))
    started = threading.Barrier(2, timeout=60)
    results: list[Any] = []

    async def use() -> None:
        await notes.afetch("s")
        await asyncio.to_thread(started.wait)  # both loops now hold a pool
        results.append(await notes.afetch("s"))

    threads = [threading.Thread(target=asyncio.run, args=(use(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[f"{SECRET} 0"]] * 2
    loops = {loop for loop, _ in notes.driver.opened}
    assert len(notes.driver.opened) == 2 and len(loops) == 2
    assert len(notes.driver.closed) == 2


def test_aclose_closes_the_running_loops_pool_at_once(notes: Notes) -> None:
    async def use() -> None:
        await notes.afetch("s")
        await notes.aclose()
        assert [pool for _, pool in notes.driver.opened] == notes.driver.closed
        await notes.afetch("s")  # a later call opens a new pool

    asyncio.run(use())
    assert len(notes.driver.opened) == 2 and len(notes.driver.closed) == 2


# -- retries: one path, logged without content ------------------------------------------------


class RetrySeen(logging.Handler):
    """Set when the runner logs a retry."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retried" in record.getMessage():
            self.seen.set()


@contextmanager
def locked_until_retried(path: str, logger: str = "chathistory") -> Iterator[None]:
    """Hold the database's write lock, from another connection, until ``logger`` logs a retry."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    retried = RetrySeen()
    retries = logging.getLogger(logger)
    retries.addHandler(retried)

    def release() -> None:
        retried.seen.wait(timeout=60)
        holder.execute("COMMIT")

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        yield
    finally:
        retried.seen.set()
        releaser.join()
        retries.removeHandler(retried)
        holder.close()


def patient(backend: SqliteBackend) -> SqliteBackend:
    """The backend with a runner that tries long enough for a loaded machine's threads."""
    backend.runner = Runner(backend, backend.driver, attempts=30, max_wait=0.2)
    return backend


def test_a_retry_is_a_warning_naming_backend_operation_attempt_and_cause(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "chat.sqlite3")
    backend = patient(SqliteBackend(SqliteBackend.Config(path=path, timeout=0.05)))
    backend.create_collection()
    caplog.set_level(logging.DEBUG)
    with locked_until_retried(path):
        backend.append("s", secret_records(2))  # waits out the lock through retries
    assert [record["data"]["content"] for record in backend.fetch("s")] == [
        f"{SECRET} 0", f"{SECRET} 1"]
    retries = [record for record in caplog.records if "retried" in record.getMessage()]
    assert retries, "the locked append succeeded without a retry"
    first = retries[0]
    assert first.name == "chathistory" and first.levelno == logging.WARNING
    assert first.getMessage() == (
        "backend 'sqlite': append failed on attempt 1 of 30 and is retried: "
        "OperationalError: database is locked")
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    backend.close()


def test_a_write_is_not_retried_when_it_may_have_run(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    class MayHaveRun(AioSqliteDriver):
        def is_transient(self, error: BaseException, *, write: bool) -> bool:
            return not write  # a lost reply: only a read may run again

    backend = Notes(str(tmp_path / "missing-table.sqlite3"))
    backend.driver = MayHaveRun(backend.driver.path)
    backend.runner = Runner(backend, backend.driver, max_wait=0.01)
    with pytest.raises(ChatHistoryError, match="failed to clear"):
        backend.clear("s")
    assert backend.driver.sent == 1 and "retried" not in caplog.text

    @operation()
    def read_missing(self: Notes) -> Operation[Any]:
        return (yield ("SELECT * FROM no_such_table",))

    with pytest.raises(BackendUnavailableError, match="after 4 attempts"):
        read_missing.__get__(backend)()
    assert backend.driver.sent == 5


def test_a_native_async_call_retries_on_the_same_path(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    class LockedIsTransient(AioSqliteDriver):
        def is_transient(self, error: BaseException, *, write: bool) -> bool:
            return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    path = str(tmp_path / "notes.sqlite3")
    backend = Notes(path)
    backend.create_collection()
    backend.driver = LockedIsTransient(path, timeout=0.05)
    backend.runner = Runner(backend, backend.driver, attempts=30, max_wait=0.2)
    assert backend.runner is not None
    with locked_until_retried(path, backend.runner.logger.name):
        asyncio.run(backend.aappend("s", secret_records(1)))
    assert backend.fetch("s") == [f"{SECRET} 0"]
    retried = [record.getMessage() for record in caplog.records if "retried" in record.getMessage()]
    assert retried[0] == ("backend 'notes': append failed on attempt 1 of 30 and is retried: "
                          "OperationalError: database is locked")
    assert len(backend.driver.opened) == 1  # every try used the loop's one pool


def test_a_failed_operation_is_rebuilt_on_each_try(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.sqlite3")
    backend = patient(SqliteBackend(SqliteBackend.Config(path=path, timeout=0.05)))
    backend.create_collection()
    builds = 0
    runner = backend.runner
    assert runner is not None

    def append() -> Operation[None]:
        nonlocal builds
        builds += 1
        yield from SqliteBackend.append.steps(backend, "s", secret_records(1))

    with locked_until_retried(path):
        runner.run("append", append, write=True, transaction=True)
    assert builds >= 2 and len(backend.fetch("s")) == 1
    backend.close()


class CommitsAtExit(AioSqliteDriver):
    """Each try in a transaction whose foreign keys are checked at its COMMIT; the hooks
    note where the runner says each failed try's error came."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.seen: list[tuple[str, Phase]] = []

    @contextmanager
    def connection(self, call: Call) -> Iterator[sqlite3.Connection]:
        with super().connection(call) as connection:
            connection.executescript("PRAGMA foreign_keys = ON; BEGIN IMMEDIATE")
            yield connection  # on an error, closing rolls back
            connection.execute("COMMIT")

    @asynccontextmanager
    async def async_connection(self, pool: aiosqlite.Connection, call: Call
                               ) -> AsyncIterator[aiosqlite.Connection]:
        await pool.executescript("PRAGMA foreign_keys = ON; BEGIN IMMEDIATE")
        try:
            yield pool
            await pool.execute("COMMIT")
        finally:
            if pool.in_transaction:
                await pool.rollback()

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        self.seen.append(("is_transient", failed_while(error)))
        return False

    def translate(self, error: BaseException, call: Call) -> BaseException:
        self.seen.append(("translate", failed_while(error)))
        return error


def test_the_hooks_learn_where_in_the_try_an_error_came(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    with sqlite3.connect(path) as setup:
        setup.executescript(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY); CREATE TABLE entries (account "
            "INTEGER REFERENCES accounts (id) DEFERRABLE INITIALLY DEFERRED)")
    setup.close()
    not_a_database = tmp_path / "notes.txt"  # opens, but no transaction begins on it
    not_a_database.write_text("not a database " * 100)

    def insert(table: str) -> Operation[None]:
        yield (f"INSERT INTO {table} VALUES (1)",)

    for where, phase, table in [
            (str(not_a_database), "connect", "entries"),
            (path, "send", "no_such_table"),
            (path, "commit", "entries")]:  # no account 1: the COMMIT fails
        for run_async in (False, True):
            driver = CommitsAtExit(where)
            runner = Runner(Notes(where), driver)
            steps = partial(insert, table)
            with pytest.raises(sqlite3.Error) as raised:
                if run_async:
                    asyncio.run(runner.arun("append", steps, write=True))
                else:
                    runner.run("append", steps, write=True)
            assert failed_while(raised.value) == phase, (phase, run_async)
            assert driver.seen == [("is_transient", phase), ("translate", phase)]
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM entries").fetchone() == (0,)
    check.close()


# -- no lock across backends --------------------------------------------------------------


def test_a_slow_first_create_holds_up_only_its_own_backend() -> None:
    class SlowCreate(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.creating, self.release = threading.Event(), threading.Event()

        def create_collection(self) -> None:
            self.creating.set()
            self.release.wait(timeout=30)

    slow, other = SlowCreate(), MemoryBackend()
    creator = threading.Thread(target=ensure_collection, args=(slow,))
    creator.start()
    try:
        assert slow.creating.wait(timeout=30)
        done = threading.Event()

        def use_other() -> None:
            ensure_collection(other)
            done.set()

        threading.Thread(target=use_other).start()
        assert done.wait(timeout=30), "another backend waited for this one's create"
        assert creator.is_alive()  # the slow create was still running all along
    finally:
        slow.release.set()
        creator.join()


def test_threads_of_one_backend_wait_for_its_single_first_create() -> None:
    class Counting(MemoryBackend):
        creates = 0

        def create_collection(self) -> None:
            time.sleep(0.05)  # so the other threads arrive while it runs
            type(self).creates += 1

    backend = Counting()
    threads = [threading.Thread(target=ensure_collection, args=(backend,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counting.creates == 1


# -- traces: one span per operation, counts and never content -----------------------------


@pytest.fixture
def spans() -> Iterator[Any]:
    """Spans recorded by opentelemetry-sdk's in-memory exporter during the test."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the global provider can be set only once
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def test_each_operation_is_a_span_with_counts_and_no_content(tmp_path: Path, spans: Any
                                                             ) -> None:
    backend = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "chat.sqlite3")))
    backend.create_collection()
    backend.append("s", secret_records(3))
    backend.fetch("s")
    backend.fetch_many(["s", "t"])
    asyncio.run(backend.afetch("s", limit=2))
    with pytest.raises(ValueError, match="limit must be an int"):
        backend.list_sessions(limit=0)
    backend.close()
    finished = spans.get_finished_spans()
    seen = [(span.name, dict(span.attributes)) for span in finished]

    def span(operation: str, **attributes: str | int) -> tuple[str, dict[str, str | int]]:
        return (f"chathistory {operation}",
                {"chathistory.backend": "sqlite", "chathistory.operation": operation,
                 **{name.replace("_", "."): value for name, value in attributes.items()}})

    assert seen == [
        span("create_collection"),
        span("append", chathistory_sessions=1, chathistory_records=3),
        span("fetch", chathistory_sessions=1, chathistory_records=3),
        span("fetch_many", chathistory_sessions=2, chathistory_records=3),
        span("fetch", chathistory_sessions=1, chathistory_records=2),  # the async twin's
        span("list_sessions", error_type="ValueError"),
    ]
    failed = finished[-1]
    assert failed.status.status_code.name == "ERROR"
    assert failed.status.description == "ValueError" and not failed.events
    assert SECRET not in repr([(span.attributes, span.events, span.status)
                               for span in finished])


def test_without_opentelemetry_nothing_of_it_is_imported(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
import chathistory.driver
from chathistory.backends.sqlite import SqliteBackend
backend = SqliteBackend(SqliteBackend.Config(path={str(tmp_path / "x.sqlite3")!r}))
backend.create_collection()
backend.append("s", [{{"type": "human", "data": {{"content": "hi", "type": "human"}}}}])
assert len(backend.fetch("s")) == 1
assert not [name for name in sys.modules if name.startswith("opentelemetry.")], sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.strip() == "ok", done.stderr


# -- a backend of four sync methods, with no driver, still works everywhere -----------------


class FourMethods(BaseBackend):
    """What a third party may still write: the four sync methods, nothing more."""

    name = "four"

    def __init__(self) -> None:
        super().__init__(BaseBackend.Config())
        self.sessions: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def create_collection(self) -> None:
        pass

    def append(self, session_id: str, records: Any) -> None:
        texts = [encode_record(record) for record in records]
        with self.lock:
            self.sessions.setdefault(session_id, []).extend(texts)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            texts = list(self.sessions.get(session_id, []))
        if limit is not None:
            texts = texts[max(0, len(texts) - limit):]
        return [decode_record(text) for text in texts]

    def clear(self, session_id: str) -> None:
        with self.lock:
            self.sessions.pop(session_id, None)


class TestFourSyncMethodsOnly(BackendContract):
    """BaseBackend's async twins run the sync methods in a worker thread: the contract holds."""

    @pytest.fixture
    def backend(self) -> FourMethods:
        return FourMethods()


def test_each_backend_logs_on_its_own_package_logger(tmp_path: Path) -> None:
    from chathistory_example import JsonLinesBackend

    example = JsonLinesBackend.from_options(directory=tmp_path)
    sqlite = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "chat.sqlite3")))
    assert example.runner is not None and sqlite.runner is not None
    assert example.runner.logger.name == "chathistory_example"
    assert sqlite.runner.logger.name == "chathistory"


def test_close_called_inside_a_coroutine_closes_that_loops_pool_soon(notes: Notes) -> None:
    async def use() -> None:
        await notes.afetch("s")
        notes.close()  # sync close, in the loop: the pool is closed by a task of the loop
        await await_until(lambda: notes.driver.closed, "the loop's task closed its pool")
        assert [pool for _, pool in notes.driver.opened] == notes.driver.closed

    asyncio.run(use())
    assert len(notes.driver.closed) == 1


def test_waiting_fails_naming_what_it_waited_for() -> None:
    ticks: list[int] = []

    def third_tick() -> bool:
        ticks.append(1)
        return len(ticks) >= 3

    wait_until(third_tick, "three ticks", every=0)
    assert len(ticks) == 3
    with pytest.raises(AssertionError, match=r"after 0\.05 s waiting until the moon is blue"):
        wait_until(lambda: False, "the moon is blue", seconds=0.05)
    with pytest.raises(AssertionError, match="waiting until never"):
        asyncio.run(await_until(lambda: False, "never", seconds=0.05))


def test_aclose_runs_the_backends_own_close_too(tmp_path: Path) -> None:
    class ClosesMore(Notes):
        released = 0

        def close(self) -> None:
            super().close()
            self.released += 1  # something of its own, besides the runner's pools

    backend = ClosesMore(str(tmp_path / "notes.sqlite3"))
    backend.create_collection()

    async def use() -> None:
        await backend.afetch("s")
        await backend.aclose()

    asyncio.run(use())
    assert backend.released == 1
    assert [pool for _, pool in backend.driver.opened] == backend.driver.closed
