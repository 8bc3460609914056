"""Catalog entries through copy, export and import: sessions of 0 messages, and the merge
with what the target already holds, on memory, sqlite and PostgreSQL, by API and CLI."""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chathistory import get_backend, list_conversations
from chathistory.backend import Backend
from chathistory.backends.memory import MemoryBackend
from chathistory.capabilities import PrunesSessions
from chathistory.catalog import KeepsCatalog, SessionSummary
from chathistory.cli import main
from chathistory.errors import CollectionMissingError
from chathistory.testing.samples import numbered_records
from chathistory.transfer import (
    copy_sessions,
    export_sessions,
    import_sessions,
    sessions_to_transfer,
)

POSTGRES_URL = os.environ.get("CHATHISTORY_POSTGRES_URL") or \
    "postgresql://postgres@127.0.0.1:5432/test"
NOW = datetime.now(UTC).replace(microsecond=0)
DRAFT_CREATED, DRAFT_UPDATED = NOW - timedelta(days=50), NOW - timedelta(days=40)


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[str]:
    """A schema of this module's own on the local server, dropped with its tables after."""
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("chathistory_postgres")
    schema = f"chathistory_transfer_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        if os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL is not reachable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


Store = Callable[[], Backend]
"""Makes a new, empty store of one kind (the test closes it)."""


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: list[Backend] = []

    def make() -> Backend:
        if request.param == "memory":
            backend: Backend = MemoryBackend()
        elif request.param == "sqlite":
            backend = get_backend("sqlite", path=str(tmp_path / f"{len(made)}.sqlite3"))
        else:
            schema = request.getfixturevalue("postgres_schema")
            backend = get_backend("postgres", conninfo=POSTGRES_URL, schema=schema,
                                  table=f"t_{secrets.token_hex(5)}")
        backend.create_collection()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def catalog(backend: Backend) -> KeepsCatalog:
    assert isinstance(backend, KeepsCatalog)
    return backend


def with_a_draft(backend: Backend) -> Backend:
    """A session of ada's with three messages, and her draft: an entry, 0 messages, 40 days old."""
    backend.append("chat", numbered_records(3))
    catalog(backend).update_session("chat", owner="ada", title="Chat")
    catalog(backend).restore_summaries([SessionSummary(
        "draft", "ada", "Draft", {"pinned": True}, DRAFT_CREATED, DRAFT_UPDATED, 0)])
    return backend


def assert_the_draft(backend: Backend) -> None:
    draft = catalog(backend).session_summaries(["draft"])["draft"]
    assert (draft.owner, draft.title, draft.metadata, draft.messages) == (
        "ada", "Draft", {"pinned": True}, 0)
    assert abs(draft.created_at - DRAFT_CREATED) < timedelta(milliseconds=1)
    assert abs(draft.updated_at - DRAFT_UPDATED) < timedelta(milliseconds=1)
    assert backend.fetch("draft") == []
    listed = list_conversations(backend, owner="ada").summaries
    assert sorted(summary.session_id for summary in listed) == ["chat", "draft"]


# -- 1. a session with a catalog entry and no message travels ------------------------------

def test_a_whole_store_lists_its_sessions_of_no_message_too(kind: Store) -> None:
    assert sessions_to_transfer(with_a_draft(kind())) == ["chat", "draft"]


class CatalogNotThereYet(MemoryBackend):
    """A table an older version made, read in place: its catalog's table does not exist."""

    def list_summaries(self, **options: Any) -> Any:
        raise CollectionMissingError("no table t_sessions (nothing was created)")


def test_a_store_whose_catalog_is_not_there_yet_lists_the_sessions_holding_messages(
) -> None:
    backend = CatalogNotThereYet()
    backend.append_many({"b": numbered_records(1), "a": numbered_records(2)})
    assert sessions_to_transfer(backend) == ["a", "b"]


def test_an_export_writes_a_draft_as_its_summary_line_and_an_import_restores_it(
        kind: Store) -> None:
    out = io.StringIO()
    report = export_sessions(with_a_draft(kind()), out)
    assert (report.sessions, report.lines, report.summaries, report.missing) == (2, 3, 2, [])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["session_id"] for line in lines] == ["chat"] * 4 + ["draft"]
    assert lines[-1]["summary"]["title"] == "Draft"
    target = kind()
    seen: list[tuple[int, int]] = []
    imported = import_sessions(target, io.StringIO(out.getvalue()),
                               progress=lambda s, m: seen.append((s, m)))
    assert (imported.sessions, imported.messages, imported.complete, imported.summaries) == (
        2, 3, 0, 2)
    assert seen == [(2, 3)]
    assert_the_draft(target)
    again = import_sessions(target, io.StringIO(out.getvalue()))
    assert (again.sessions, again.messages, again.complete, again.mismatched) == (2, 0, 2, [])
    assert_the_draft(target)


def test_an_export_of_a_named_draft_is_its_summary_line(kind: Store) -> None:
    out = io.StringIO()
    report = export_sessions(with_a_draft(kind()), out, ["draft", "nobody"])
    assert (report.sessions, report.lines, report.summaries, report.missing) == (
        1, 0, 1, ["nobody"])
    assert [set(json.loads(line)) for line in out.getvalue().splitlines()] == [
        {"session_id", "summary"}]


def test_a_copy_carries_a_draft_and_a_prune_after_it_sees_its_age(kind: Store) -> None:
    source, target = with_a_draft(kind()), kind()
    seen: list[tuple[int, int]] = []
    report = copy_sessions(source, target, progress=lambda s, m: seen.append((s, m)))
    assert (report.sessions, report.messages, report.complete, report.summaries) == (2, 3, 0, 2)
    assert seen == [(2, 3)]
    assert_the_draft(target)
    again = copy_sessions(source, target)
    assert (again.messages, again.complete, again.summaries) == (0, 2, 2)
    assert_the_draft(target)
    assert isinstance(target, PrunesSessions)
    assert target.delete_sessions_before(NOW - timedelta(days=30)) == 1
    assert catalog(target).session_summaries(["draft"]) == {}
    assert len(target.fetch("chat")) == 3


def test_a_draft_in_the_file_for_a_session_holding_messages_is_left_alone(
        kind: Store) -> None:
    out = io.StringIO()
    export_sessions(with_a_draft(kind()), out, ["draft"])
    target = kind()
    target.append("draft", numbered_records(1, prefix="mine-"))
    report = import_sessions(target, io.StringIO(out.getvalue()))
    assert report.mismatched == ["draft"] and report.summaries == 0
    assert catalog(target).session_summaries(["draft"])["draft"].title is None


# -- 2. an entry the target holds already ---------------------------------------------------

def entry(session_id: str, owner: str | None, title: str | None, metadata: dict[str, Any],
          created_days: int, updated_days: int) -> SessionSummary:
    return SessionSummary(session_id, owner, title, metadata, NOW - timedelta(days=created_days),
                          NOW - timedelta(days=updated_days), 0)


def exported(session_id: str, summary: SessionSummary, records: list[dict[str, Any]]) -> str:
    """The lines of an export of one session: its summary line, then its records."""
    head = {key: value for key, value in summary.to_json().items()
            if key not in ("session_id", "messages")}
    return "\n".join([json.dumps({"session_id": session_id, "summary": head}),
                      *(json.dumps({"session_id": session_id, "record": record})
                        for record in records)]) + "\n"


def assert_entry(backend: Backend, session_id: str, owner: str | None, title: str | None,
                 metadata: dict[str, Any], created_days: int, updated_days: int) -> None:
    got = catalog(backend).session_summaries([session_id])[session_id]
    assert (got.owner, got.title, got.metadata) == (owner, title, metadata)
    assert abs(got.created_at - (NOW - timedelta(days=created_days))) < timedelta(seconds=1)
    assert abs(got.updated_at - (NOW - timedelta(days=updated_days))) < timedelta(seconds=1)


def test_import_append_keeps_the_targets_entry_and_fills_what_it_leaves_unset(
        kind: Store) -> None:
    target = kind()
    target.append("s", numbered_records(2, prefix="mine-"))
    catalog(target).restore_summaries([entry("s", "bob", None, {"a": 1}, 20, 10)])
    text = exported("s", entry("s", "ada", "From the file", {"a": 2, "b": 3}, 30, 5),
                    numbered_records(2, prefix="theirs-"))
    report = import_sessions(target, io.StringIO(text), append=True)
    assert (report.sessions, report.messages, report.summaries) == (1, 2, 1)
    # The target's owner and key win; the file gives the title and the key it lacked;
    # created is the earlier, updated the later of the two.
    assert_entry(target, "s", "bob", "From the file", {"a": 1, "b": 3}, 30, 5)
    assert len(target.fetch("s")) == 4
    older = exported("s", entry("s", None, None, {}, 1, 60), numbered_records(1))
    import_sessions(target, io.StringIO(older), append=True)
    assert_entry(target, "s", "bob", "From the file", {"a": 1, "b": 3}, 30, 5)


def test_import_append_to_a_session_of_no_message_merges_the_entries(kind: Store) -> None:
    target = kind()
    catalog(target).update_session("s", title="Named first")
    text = exported("s", entry("s", "ada", "From the file", {}, 30, 5), numbered_records(2))
    import_sessions(target, io.StringIO(text), append=True)
    got = catalog(target).session_summaries(["s"])["s"]
    assert (got.owner, got.title, got.messages) == ("ada", "Named first", 2)
    # updated_at is the later of the two: here the time of the append itself.
    assert got.updated_at > NOW - timedelta(minutes=5)


def test_a_restore_takes_the_files_entry_and_keeps_what_it_leaves_unset(kind: Store) -> None:
    records = numbered_records(3)
    target = kind()
    target.append("s", records[:1])  # an earlier run, killed before it gave the entry
    catalog(target).update_session("s", title="Mine", metadata={"t": 1, "a": 1})
    text = exported("s", entry("s", "ada", None, {"a": 2}, 30, 20), records)
    report = import_sessions(target, io.StringIO(text))
    assert (report.messages, report.complete, report.summaries) == (2, 0, 1)
    # The file's owner and key win; the target's title stays; updated_at is the
    # file's, not the time of the killed run, so a prune sees the session's age.
    assert_entry(target, "s", "ada", "Mine", {"t": 1, "a": 2}, 30, 20)


def test_a_copy_merges_as_a_restore_does(kind: Store) -> None:
    source, target = kind(), kind()
    source.append("s", numbered_records(2))
    catalog(source).restore_summaries([entry("s", "ada", None, {"a": 2}, 30, 20)])
    target.append("s", numbered_records(1))
    catalog(target).update_session("s", owner="bob", title="Mine", metadata={"t": 1})
    report = copy_sessions(source, target)
    assert (report.messages, report.summaries, report.mismatched) == (1, 1, [])
    assert_entry(target, "s", "ada", "Mine", {"t": 1, "a": 2}, 30, 20)


# -- the command line -----------------------------------------------------------------------

def invoke(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture(params=["sqlite", "postgres"])
def store_options(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., list[str]]:
    """``-b/-o`` (or ``--to/-O``) of a new store of one kind, by name."""
    token = secrets.token_hex(4)

    def options(name: str, flags: tuple[str, str] = ("-b", "-o")) -> list[str]:
        if request.param == "sqlite":
            return [flags[0], "sqlite", flags[1], f"path={tmp_path / name}.sqlite3"]
        schema = request.getfixturevalue("postgres_schema")
        return [flags[0], "postgres", flags[1], f"conninfo={POSTGRES_URL}", flags[1],
                f"schema={schema}", flags[1], f"table={name}_{token}"]

    return options


def test_the_commands_carry_a_draft_and_count_it_as_a_session(
        store_options: Callable[..., list[str]], tmp_path: Path) -> None:
    source = store_options("src")
    assert invoke("title", "draft", "Draft", *source).exit_code == 0
    assert invoke("owner", "draft", "ada", *source).exit_code == 0
    listed = invoke("sessions", "--owner", "ada", *source)
    assert listed.stdout.split("\t")[:2] == ["draft", "0"]

    backup = tmp_path / "backup.jsonl"
    exported_ = invoke("export", *source, "-f", str(backup))
    assert exported_.exit_code == 0, exported_.output
    assert exported_.stderr == "exported 0 messages in 1 session\n"
    assert json.loads(backup.read_text())["summary"]["title"] == "Draft"
    as_json = invoke("export", *source, "--json", "-f", str(tmp_path / "again.jsonl"))
    assert json.loads(as_json.stdout) == {"sessions": 1, "messages": 0, "summaries": 1,
                                          "missing": []}

    target = store_options("imp")
    imported = invoke("import", str(backup), *target, "--json")
    assert json.loads(imported.stdout) == {
        "sessions": 1, "messages_written": 0, "already_complete": 0, "mismatched": [],
        "summaries": 1, "summaries_dropped": 0}
    again = invoke("import", str(backup), *target)
    assert again.stdout == "imported 0 messages in 1 session (1 already complete)\n"
    shown = invoke("sessions", "--owner", "ada", "--json", *target)
    assert [(row["session_id"], row["title"], row["messages"]) for row in
            map(json.loads, shown.stdout.splitlines())] == [("draft", "Draft", 0)]

    copied_to = store_options("cpy")
    copied = invoke("copy", *source, *store_options("cpy", ("--to", "-O")))
    assert copied.exit_code == 0, copied.output
    assert copied.stdout == "copied 0 messages in 1 session (0 already complete)\n"
    shown = invoke("sessions", "--owner", "ada", "--json", *copied_to)
    assert [row["title"] for row in map(json.loads, shown.stdout.splitlines())] == ["Draft"]


def test_import_append_on_the_command_line_keeps_the_stores_title(
        store_options: Callable[..., list[str]]) -> None:
    target = store_options("app")
    text = exported("s", entry("s", "ada", "From the file", {}, 30, 5), numbered_records(2))
    assert invoke("import", *target, stdin=text).exit_code == 0
    assert invoke("title", "s", "Renamed", *target).exit_code == 0
    appended = invoke("import", *target, "--append", stdin=text)
    assert appended.stdout == "imported 2 messages in 1 session (0 already complete)\n"
    (row,) = map(json.loads, invoke("sessions", "--owner", "ada", "--json",
                                    *target).stdout.splitlines())
    assert (row["title"], row["messages"]) == ("Renamed", 4)
    # The later of the two entries' times: the messages are the file's, 5 days old.
    updated = datetime.fromisoformat(row["updated_at"])
    assert abs(updated - (NOW - timedelta(days=5))) < timedelta(seconds=1)
