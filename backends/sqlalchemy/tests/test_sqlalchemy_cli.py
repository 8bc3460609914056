"""Out of MariaDB through the command line, as a user runs it: a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from chathistory_sqlalchemy.sql import KEY_BYTES
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict
from sqlalchemy import Engine, text

from chathistory.backends.sqlite import SqliteBackend
from chathistory.capabilities import SessionInfo
from chathistory.testing import numbered_records

# More than a page of the CLI's listing (1,000) and a chunk of its copy (200),
# with ids MariaDB's collations fold or order otherwise than Python.
SESSIONS = [f"user-{number:05d}" for number in range(1100)] + [
    "A", "a", "a ", "É", "é", "e\u0301", "ß", "ss", "😀", "\ue000",
    "p" * KEY_BYTES + "B", "p" * KEY_BYTES + "a"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chathistory", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def _records(number: int) -> list[dict[str, object]]:
    return [message_to_dict(HumanMessage(f"{number}: hi 😀", id=f"h{number}")),
            message_to_dict(AIMessage(f"{number}: hello", tool_calls=[
                {"name": "look", "args": {"n": number}, "id": f"t{number}"}])),
            *numbered_records(number % 4, prefix=f"{number}-")]


@pytest.fixture(params=["chathistory", "langchain_community"])
def source(request: pytest.FixtureRequest, mysql_url: str, mysql_table: str,
           mysql_admin: Engine) -> Iterator[tuple[list[str], dict[str, list[dict[str, object]]]]]:
    """The ``-o`` options of a MariaDB table holding SESSIONS, and what each holds.

    The langchain_community table is made as SQLChatMessageHistory makes it, in
    the server's case-folding collation, and never given our index or column:
    the copy reads it in place.
    """
    layout = request.param
    if layout == "langchain_community":
        with mysql_admin.begin() as connection:
            connection.execute(text(
                f"CREATE TABLE `{mysql_table}` (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY "
                "KEY, session_id TEXT, message TEXT) DEFAULT CHARSET=utf8mb4 "
                "COLLATE=utf8mb4_general_ci"))
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table, layout=layout)
    if layout == "chathistory":
        backend.create_collection()
    stored = {session: _records(number) for number, session in enumerate(SESSIONS)}
    backend.append_many(stored)
    backend.close()
    yield ["-o", f"url={mysql_url}", "-o", f"table={mysql_table}", "-o", f"layout={layout}"], \
        stored


def test_copy_takes_every_session_whole_to_sqlite_and_a_rerun_writes_nothing(
    source: tuple[list[str], dict[str, list[dict[str, object]]]], tmp_path: Path,
    mysql_admin: Engine, mysql_table: str
) -> None:
    options, stored = source
    columns_before = _columns(mysql_admin, mysql_table)
    target = tmp_path / "copy.sqlite3"
    copy = ["copy", "-b", "sqlalchemy", *options, "--to", "sqlite", "-O", f"path={target}"]
    first = run(*copy, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["sessions"] == len(SESSIONS)
    assert report["messages_written"] == sum(len(records) for records in stored.values())
    assert report["mismatched"] == []

    copied = SqliteBackend(SqliteBackend.Config(path=str(target)))
    listed = [info.session_id for page in _pages(copied) for info in page]
    assert listed == sorted(SESSIONS)
    assert copied.fetch_many(SESSIONS) == stored
    assert {info.session_id: info.messages for page in _pages(copied) for info in page} == {
        session: len(records) for session, records in stored.items()}
    copied.close()

    again = run(*copy, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["messages_written"] == 0
    assert json.loads(again.stdout)["already_complete"] == len(SESSIONS)
    # Reading the source changed nothing in it.
    assert _columns(mysql_admin, mysql_table) == columns_before


def test_sessions_and_export_list_every_session_in_id_order(
    source: tuple[list[str], dict[str, list[dict[str, object]]]], tmp_path: Path
) -> None:
    options, stored = source
    listed = run("sessions", "-b", "sqlalchemy", *options, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["session_id"] for row in rows] == sorted(SESSIONS)
    # Counted where the catalog is kept; the peer's table would need every row read.
    counts = {row["session_id"]: row["messages"] for row in rows}
    assert counts == ({session: len(records) for session, records in stored.items()}
                      if "layout=chathistory" in options else dict.fromkeys(SESSIONS))
    exported = tmp_path / "all.jsonl"
    result = run("export", "-b", "sqlalchemy", *options, "-f", str(exported))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    by_session: dict[str, list[dict[str, object]]] = {}
    described: list[str] = []
    for line in lines:
        if "summary" in line:  # the catalog's entry, before the session's records
            assert line["session_id"] not in by_session
            described.append(line["session_id"])
        else:
            by_session.setdefault(line["session_id"], []).append(line["record"])
    assert list(by_session) == sorted(SESSIONS)
    assert by_session == stored
    # Only our own layout keeps a catalog (the peer's table is written by its class too).
    assert described == (sorted(SESSIONS) if "layout=chathistory" in options else [])


def _pages(backend: SqliteBackend) -> Iterator[list[SessionInfo]]:
    after: str | None = None
    while page := backend.list_sessions(after=after, limit=500):
        yield list(page)
        after = page[-1].session_id


def _columns(admin: Engine, table: str) -> str:
    with admin.connect() as connection:
        return str(connection.execute(text(f"SHOW CREATE TABLE `{table}`")).one()[1])


def test_the_catalog_commands_list_title_and_erase_an_owner(
    mysql_url: str, mysql_table: str
) -> None:
    options = ["-b", "sqlalchemy", "-o", f"url={mysql_url}", "-o", f"table={mysql_table}"]
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    backend.create_collection()
    for number in range(5):
        backend.append(f"s{number}", numbered_records(number + 1))
    backend.close()
    for number in range(5):
        owned = run("owner", *options, f"s{number}", "ada" if number < 3 else "bob")
        assert owned.returncode == 0, owned.stderr
    titled = run("title", *options, "s2", "Trip to Lyon")
    assert titled.returncode == 0, titled.stderr
    listed = run("sessions", *options, "--owner", "ada", "--newest", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["session_id"], row["title"], row["messages"]) for row in rows] == [
        ("s2", "Trip to Lyon", 3), ("s1", None, 2), ("s0", None, 1)]
    dry = run("erase", *options, "--owner", "ada", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["sessions"] == 3
    erased = run("erase", *options, "--owner", "ada", "--yes", "--json")
    assert erased.returncode == 0, erased.stderr
    assert (json.loads(erased.stdout)["sessions"], json.loads(erased.stdout)["messages"]) == (
        3, 6)
    left = run("sessions", *options, "--newest", "--json")
    assert [json.loads(line)["session_id"] for line in left.stdout.splitlines()] == ["s4", "s3"]
