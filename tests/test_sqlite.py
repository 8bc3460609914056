import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from chathistory import BackendUnavailableError, ChatHistory, ChatHistoryError
from chathistory.backends.sqlite import SqliteBackend
from chathistory.testing import BackendContract
from chathistory.testing.samples import numbered_records, sample_messages


class TestSqliteFile(BackendContract):
    @pytest.fixture
    def backend(self, sqlite_backend: SqliteBackend) -> SqliteBackend:
        return sqlite_backend

    @pytest.fixture
    def uncreated_backend(self, tmp_path: Path) -> Iterator[SqliteBackend]:
        backend = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "missing" / "x.db")))
        yield backend
        backend.close()


class TestSqliteInMemory(BackendContract):
    @pytest.fixture
    def backend(self) -> Iterator[SqliteBackend]:
        backend = SqliteBackend(SqliteBackend.Config(path=":memory:"))
        backend.create_collection()
        yield backend
        backend.close()


def test_in_memory_databases_are_separate() -> None:
    first = SqliteBackend(SqliteBackend.Config(path=":memory:"))
    second = SqliteBackend(SqliteBackend.Config(path=":memory:"))
    for backend in (first, second):
        backend.create_collection()
    first.append("s", numbered_records(1))
    assert second.fetch("s") == []


def test_the_file_is_in_wal_mode(sqlite_backend: SqliteBackend, sqlite_path: str) -> None:
    with sqlite3.connect(sqlite_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newest_n_is_read_through_the_index(sqlite_backend: SqliteBackend, sqlite_path: str
                                            ) -> None:
    inner = ('SELECT id, message FROM "message_store" WHERE session_id = ? '
             "ORDER BY id DESC LIMIT ?")
    with sqlite3.connect(sqlite_path) as connection:
        plan = " | ".join(row[3] for row in
                          connection.execute(f"EXPLAIN QUERY PLAN {inner}", ("s", 20)))
    assert "USING INDEX message_store_session_id_id (session_id=?)" in plan
    assert "TEMP B-TREE" not in plan


def test_default_path_is_created_under_the_data_home(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATHISTORY_SQLITE_PATH", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    history = ChatHistory("s")
    history.add_user_message("stored by default")
    assert (tmp_path / "data" / "chathistory" / "chathistory.sqlite3").is_file()
    assert ChatHistory("s").messages == [HumanMessage("stored by default")]


def test_a_batch_that_fails_midway_leaves_nothing(sqlite_backend: SqliteBackend,
                                                  sqlite_path: str) -> None:
    with sqlite3.connect(sqlite_path) as connection:
        connection.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON message_store "
            "WHEN NEW.message LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
    records = numbered_records(3) + numbered_records(1, prefix="poison")
    with pytest.raises(ChatHistoryError, match="poisoned"):
        sqlite_backend.append("s", records)
    assert sqlite_backend.fetch("s") == []
    sqlite_backend.append("s", numbered_records(2))
    assert len(sqlite_backend.fetch("s")) == 2


def test_a_writer_waits_for_a_lock_instead_of_failing(sqlite_backend: SqliteBackend,
                                                      sqlite_path: str) -> None:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            sqlite_backend.append("s", numbered_records(1))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    holder = sqlite3.connect(sqlite_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=0.3)  # time enough to fail, had it not waited for the lock
    assert writer.is_alive() and errors == []
    holder.execute("COMMIT")
    holder.close()
    writer.join()
    assert errors == []
    assert len(sqlite_backend.fetch("s")) == 1


def test_a_lock_held_past_the_timeout_is_an_unavailable_error(sqlite_path: str) -> None:
    backend = SqliteBackend(SqliteBackend.Config(path=sqlite_path, timeout=0.1))
    backend.create_collection()
    holder = sqlite3.connect(sqlite_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BackendUnavailableError, match="database is locked"):
            backend.append("s", numbered_records(1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert backend.fetch("s") == []


def test_an_unopenable_path_is_an_unavailable_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    backend = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "a-directory")))
    with pytest.raises(BackendUnavailableError, match=r"cannot open|unable to open"):
        backend.create_collection()


def test_a_path_under_a_file_says_what_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    path = tmp_path / "a-file" / "sub" / "chat.sqlite3"
    history = ChatHistory("s", backend="sqlite", path=str(path))
    with pytest.raises(BackendUnavailableError,
                       match=r"cannot open .*chat.sqlite3.*a-file' is not a directory"):
        history.add_user_message("hi")
    with pytest.raises(BackendUnavailableError, match="'/dev/null' is not a directory"):
        ChatHistory("s", backend="sqlite", path="/dev/null/chat.sqlite3").messages  # noqa: B018


WRITER = """
import sys, threading
from chathistory.backends.sqlite import SqliteBackend

path, process = sys.argv[1], int(sys.argv[2])
backend = SqliteBackend(SqliteBackend.Config(path=path))
backend.create_collection()

def write(thread):
    for batch in range(10):
        backend.append("shared", [
            {"type": "human", "data": {"content": f"p{process}t{thread}-{batch}-{part}"}}
            for part in range(2)])

threads = [threading.Thread(target=write, args=(thread,)) for thread in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_processes_and_threads_writing_one_file_lose_nothing(sqlite_path: str) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, sqlite_path, str(number)],
                                  stderr=subprocess.PIPE, text=True)
                 for number in range(4)]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], errors
    backend = SqliteBackend(SqliteBackend.Config(path=sqlite_path))
    contents = [record["data"]["content"] for record in backend.fetch("shared")]
    assert len(contents) == len(set(contents)) == 4 * 4 * 10 * 2
    for process in range(4):
        for thread in range(4):
            own = [c for c in contents if c.startswith(f"p{process}t{thread}-")]
            assert own == [f"p{process}t{thread}-{b}-{p}" for b in range(10) for p in range(2)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_reads_and_writes_langchain_community_sql_histories(sqlite_path: str) -> None:
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    theirs = SQLChatMessageHistory("s", connection=f"sqlite:///{sqlite_path}")
    theirs.add_messages([HumanMessage("written by them"), AIMessage("also them")])
    ours = ChatHistory("s", backend="sqlite", path=sqlite_path)
    assert [m.content for m in ours.messages] == ["written by them", "also them"]
    ours.add_messages(sample_messages())
    assert ours.get_messages(limit=len(sample_messages())) == sample_messages()
    assert theirs.messages == [HumanMessage("written by them"), AIMessage("also them"),
                               *sample_messages()]
