"""Writers appending to one session: all or nothing, in order, never torn by another batch.

4 processes x 4 threads on MariaDB; and threads of one process on PostgreSQL, MariaDB
and SQLite, in both layouts, with readers that must only ever see a prefix of the history."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from langchain_core.messages import HumanMessage, message_to_dict
from sqlalchemy import text

PROCESSES = 4
WRITERS = Path(__file__).with_name("sqlalchemy_writers.py")


def test_batches_stay_whole_contiguous_and_in_each_writers_order(
    mysql_url: str, mysql_table: str, tmp_path: Path
) -> None:
    sys.path.insert(0, str(WRITERS.parent))
    try:
        from sqlalchemy_writers import BATCHES, THREADS, batch
    finally:
        sys.path.remove(str(WRITERS.parent))
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    backend.create_collection()
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, str(WRITERS), mysql_url, mysql_table,
                                   "shared", str(number), str(go)])
                 for number in range(PROCESSES)]
    go.touch()
    assert [process.wait(timeout=240) for process in processes] == [0] * PROCESSES

    contents = [record["data"]["content"] for record in backend.fetch("shared")]
    writers = [f"p{p}t{t}" for p in range(PROCESSES) for t in range(THREADS)]
    expected = {writer: [record["data"]["content"] for number in range(BATCHES)
                         for record in batch(writer, number)] for writer in writers}
    assert len(contents) == len(set(contents)) == sum(map(len, expected.values()))
    for writer in writers:  # nothing lost, each writer's batches in its order
        assert [c for c in contents if c.startswith(f"{writer}-")] == expected[writer]
    position = 0
    while position < len(contents):  # every batch is contiguous: no other row inside it
        writer, number, _ = contents[position].split("-")
        size = 1 + int(number[1:]) % 4
        assert contents[position:position + size] == [
            f"{writer}-{number}-{part}" for part in range(size)], f"batch split at {position}"
        position += size
    backend.close()


# -- threads of one process, on each database ---------------------------------------------

THREADS, BATCHES = 6, 20


def _url(request: pytest.FixtureRequest, database: str) -> tuple[str, str]:
    """The URL of ``database`` and a private table on it (dropped after the test)."""
    if database == "sqlite":
        return request.getfixturevalue("sqlite_url"), "chathistory_messages"
    admin = request.getfixturevalue(f"{database}_admin")
    return (admin.url.render_as_string(hide_password=False),
            request.getfixturevalue(f"{database}_table"))


@pytest.mark.parametrize("layout", ["chathistory", "langchain_community"])
@pytest.mark.parametrize("database", ["postgres", "mysql", "sqlite"])
def test_threads_appending_to_one_session_never_tear_a_batch(
    request: pytest.FixtureRequest, database: str, layout: str
) -> None:
    """Writer w appends batches [w-b-0 .. w-b-k] (odd writers with append_many, to two
    more sessions too); readers meanwhile see only prefixes of the final history (no
    batch becomes visible before one stored ahead of it). MySQL/MariaDB without a
    catalog has no lock to give that order (documented): there, batches stay whole."""
    url, table = _url(request, database)
    unlocked = database == "mysql" and layout == "langchain_community"
    if unlocked:
        admin = request.getfixturevalue("mysql_admin")
        with admin.connect() as connection:
            mode = connection.execute(text("SELECT @@innodb_autoinc_lock_mode")).scalar()
        if mode not in (0, 1):
            pytest.skip(f"innodb_autoinc_lock_mode is {mode}: a multi-row INSERT's ids "
                        "may interleave with another's (docs/backends/sqlalchemy.md)")
    backend = SQLAlchemyBackend.from_options(url=url, table=table, layout=layout,
                                             pool_size=THREADS + 2)
    backend.create_collection()
    start, done = threading.Barrier(THREADS + 2), threading.Event()
    failures: list[BaseException] = []
    seen: list[list[str]] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for number in range(BATCHES):
                batch = [message_to_dict(HumanMessage(f"w{writer}-{number}-{k}"))
                         for k in range(1 + number % 4)]
                if writer % 2:  # the bulk path too, with another session before and after
                    backend.append_many({"a": batch, "shared": batch, "z": batch})
                else:
                    backend.append("shared", batch)
        except BaseException as error:
            failures.append(error)

    def read() -> None:
        try:
            start.wait()
            while not done.is_set():
                seen.append([r["data"]["content"] for r in backend.fetch("shared")])
        except BaseException as error:
            failures.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert failures == []
    contents = [record["data"]["content"] for record in backend.fetch("shared")]
    backend.close()
    assert len(contents) == THREADS * sum(1 + number % 4 for number in range(BATCHES))
    for writer in range(THREADS):  # each writer's batches in its order
        assert [c for c in contents if c.startswith(f"w{writer}-")] == [
            f"w{writer}-{number}-{k}" for number in range(BATCHES) for k in range(1 + number % 4)]
    position = 0
    while position < len(contents):  # every batch contiguous: no other writer's row inside
        writer, number, _ = contents[position].split("-")
        size = 1 + int(number) % 4
        assert contents[position:position + size] == [
            f"{writer}-{number}-{k}" for k in range(size)], f"batch torn at {position}"
        position += size
    if unlocked:
        return
    torn = [len(snapshot) for snapshot in seen if contents[:len(snapshot)] != snapshot]
    assert torn == [], f"{len(torn)} of {len(seen)} reads were not a prefix of the history"
