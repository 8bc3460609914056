"""The catalog on the command line: sessions --owner, title, owner, erase, prune --owner, --json."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chathistory.backends.sqlite import SqliteBackend
from chathistory.catalog import ERASE_CHUNK, SessionSummary
from chathistory.testing import numbered_records


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chathistory", *args], capture_output=True,
                          text=True, input=stdin, timeout=300, check=False)


@pytest.fixture
def path(tmp_path: Path) -> str:
    """Six sessions: ada's a0..a3 (a0 the oldest, by 40 days), bob's b0, b1; a2 is a 'pro'."""
    file = str(tmp_path / "chat.sqlite3")
    backend = SqliteBackend(SqliteBackend.Config(path=file))
    backend.create_collection()
    now = datetime.now(UTC)
    for number, session_id in enumerate(["a0", "a1", "a2", "a3", "b0", "b1"]):
        backend.append(session_id, numbered_records(number + 1))
        backend.restore_summaries([SessionSummary(
            session_id, "ada" if session_id.startswith("a") else "bob", f"Title {session_id}",
            {"plan": "pro"} if session_id == "a2" else {},
            now - timedelta(days=60), now - timedelta(days=40 - number), 0)])
    backend.close()
    return file


def ids(output: str) -> list[str]:
    return [line.split("\t")[0] for line in output.splitlines()]


def test_sessions_lists_one_owners_newest_first_with_a_cursor_for_more(path: str) -> None:
    first = run("sessions", "--owner", "ada", "--newest", "--limit", "2", "-o", f"path={path}")
    assert first.returncode == 0, first.stderr
    assert ids(first.stdout) == ["a3", "a2"]
    assert first.stdout.splitlines()[0].split("\t")[1:] == [
        "4", first.stdout.split("\t")[2], "ada", "Title a3"]
    cursor = first.stderr.strip().removeprefix("(more: --cursor ").removesuffix(")")
    rest = run("sessions", "--owner", "ada", "--cursor", cursor, "-o", f"path={path}")
    assert ids(rest.stdout) == ["a1", "a0"] and rest.stderr == ""
    oldest = run("sessions", "--oldest", "-n", "3", "-o", f"path={path}", "--json")
    assert [json.loads(line)["session_id"] for line in oldest.stdout.splitlines()] == [
        "a0", "a1", "a2"]
    assert json.loads(oldest.stdout.splitlines()[0])["owner"] == "ada"
    pro = run("sessions", "--where", "plan=pro", "-o", f"path={path}")
    assert ids(pro.stdout) == ["a2"]
    nobody = run("sessions", "--owner", "carol", "-o", f"path={path}")
    assert (nobody.stdout, nobody.stderr) == ("", "(no sessions)\n")


def test_a_script_pages_a_json_listing_by_the_next_cursor_of_its_last_row(path: str) -> None:
    # The cursor was only in the "(more: --cursor ...)" note, plain text on stderr.
    listed, cursor, pages = [], None, 0
    while True:
        more = ["--cursor", cursor] if cursor else []
        page = run("sessions", "--owner", "ada", "-n", "3", "--json", *more, "-o",
                   f"path={path}")
        assert page.returncode == 0, page.stderr
        rows = [json.loads(line) for line in page.stdout.splitlines()]
        assert all("next_cursor" not in row for row in rows[:-1])
        listed += [row["session_id"] for row in rows]
        pages += 1
        cursor = rows[-1].get("next_cursor")
        if cursor is None:
            assert page.stderr == ""
            break
        assert page.stderr == f"(more: --cursor {cursor})\n"  # as before, for a person
    assert (listed, pages) == (["a3", "a2", "a1", "a0"], 2)
    every = run("sessions", "--owner", "ada", "--json", "-o", f"path={path}")
    assert all("next_cursor" not in json.loads(line) for line in every.stdout.splitlines())


def test_title_and_owner_set_a_sessions_catalog_entry(path: str) -> None:
    titled = run("title", "b0", "Budget 2027", "-o", f"path={path}")
    assert titled.stdout == "b0: owner bob, title Budget 2027, 5 messages\n", titled.stderr
    moved = json.loads(run("owner", "b0", "ada", "-o", f"path={path}", "--json").stdout)
    assert (moved["owner"], moved["title"], moved["messages"]) == ("ada", "Budget 2027", 5)
    assert "b0" in ids(run("sessions", "--owner", "ada", "-o", f"path={path}").stdout)


def test_clear_removes_the_entry_of_a_session_that_holds_no_message_yet(path: str) -> None:
    # clear read only the messages: it said "no session" of a listed one, and kept it.
    run("title", "draft", "Unsent", "-o", f"path={path}")
    cleared = run("clear", "draft", "-o", f"path={path}")
    assert (cleared.returncode, cleared.stderr) == (0, "cleared session 'draft'\n")
    assert "draft" not in ids(run("sessions", "--newest", "-o", f"path={path}").stdout)
    nobody = run("clear", "draft", "-o", f"path={path}")
    assert nobody.stderr == "no session 'draft': it holds no messages, nothing was deleted\n"


def test_metadata_merges_key_by_key_or_replaces_from_the_command_line(path: str) -> None:
    merged = run("metadata", "a2", "tier=3", "note=hello world", "-o", f"path={path}")
    assert merged.stdout == ('a2: metadata {"plan": "pro", "tier": 3, "note": "hello world"}'
                             "\n"), merged.stderr
    assert ids(run("sessions", "--where", "tier=3", "-o", f"path={path}").stdout) == ["a2"]
    replaced = run("metadata", "a2", "pinned=true", "--replace", "--json", "-o",
                   f"path={path}")
    assert json.loads(replaced.stdout)["metadata"] == {"pinned": True}
    cleared = run("metadata", "a2", "--replace", "-o", f"path={path}")
    assert cleared.stdout == "a2: metadata {}\n"
    shown = run("metadata", "a1", "--json", "-o", f"path={path}")  # no pairs: shows it
    assert json.loads(shown.stdout)["metadata"] == {}
    nobody = run("metadata", "zz", "-o", f"path={path}")
    assert (nobody.returncode, nobody.stderr) == (
        1, "Error: no session 'zz': it has no catalog entry\n")
    bad = run("metadata", "a1", "tier", "-o", f"path={path}")
    assert bad.returncode == 2 and "'tier' is not KEY=VALUE" in bad.stderr


def test_erase_counts_asks_and_deletes_one_owners_sessions_only(path: str) -> None:
    dry = run("erase", "--owner", "ada", "--dry-run", "-o", f"path={path}")
    assert dry.stdout == "would erase 4 sessions of owner 'ada' (10 messages)\n"
    refused = run("erase", "--owner", "ada", "-o", f"path={path}", stdin="n\n")
    assert refused.returncode == 1
    assert "Erase 4 sessions of owner 'ada' (10 messages)?" in refused.stderr
    assert refused.stderr.endswith("Error: not confirmed: nothing was erased (--yes erases "
                                   "without asking)\n")
    unattended = run("erase", "--owner", "ada", "-o", f"path={path}", stdin="")  # cron
    assert unattended.returncode == 1 and unattended.stderr.endswith(
        "Error: not confirmed: nothing was erased (--yes erases without asking)\n")
    assert len(ids(run("sessions", "--owner", "ada", "-o", f"path={path}").stdout)) == 4
    done = run("erase", "--owner", "ada", "--yes", "-o", f"path={path}", "--json")
    assert json.loads(done.stdout) == {"owner": "ada", "dry_run": False, "sessions": 4,
                                       "messages": 10}
    assert run("sessions", "--owner", "ada", "-o", f"path={path}").stdout == ""
    assert ids(run("sessions", "--owner", "bob", "-o", f"path={path}").stdout) == ["b1", "b0"]
    again = run("erase", "--owner", "ada", "-o", f"path={path}")  # nothing to ask about
    assert again.stdout == "erased 0 sessions of owner 'ada' (0 messages)\n"
    named = run("erase", "b0", "nobody", "-y", "-o", f"path={path}")
    assert named.stdout == "erased 1 session named (5 messages)\n"
    assert named.stderr == "no session 'nobody': nothing to erase for it\n"
    again = run("erase", "b0", "b1", "nobody", "-y", "--json", "-o", f"path={path}")
    assert json.loads(again.stdout) == {"owner": None, "dry_run": False, "sessions": 1,
                                        "messages": 6, "missing": ["b0", "nobody"]}


@pytest.mark.parametrize(("args", "message"), [
    (["erase"], "name an --owner or SESSION_IDS"),
    (["erase", "s", "--owner", "ada"], "name an --owner or SESSION_IDS"),
    (["sessions", "--owner", "ada", "--after", "x"], "pages with --cursor"),
    (["sessions", "--cursor", "garbage"], "not a listing cursor"),
    # Both orders listed by the last one given, silently.
    (["sessions", "--oldest", "--newest"], "--newest and --oldest: give one of them"),
    (["sessions", "--where", "plan"], "is not KEY=VALUE"),
    # An empty --owner (an unset shell variable) would list everyone's sessions.
    (["sessions", "--owner", ""], "'--owner': must not be empty"),
    (["erase", "--owner", "", "--yes"], "'--owner': must not be empty"),
    (["prune", "--older-than", "1d", "--owner", ""], "'--owner': must not be empty"),
    (["sessions", "--where", "score=1.5"],
     "'score=1.5': metadata is compared with text, whole numbers, true, false or null"),
    (["sessions", "--where", "tags=[1]"], "for the text, quote it: 'tags=\"[1]\"'"),
    (["title", "s", "t", "-b", "memory", "-o", "latency=0"], None),
])
def test_catalog_mistakes_are_one_line_errors(path: str, args: list[str],
                                              message: str | None) -> None:
    result = run(*args, *([] if "-b" in args else ["-o", f"path={path}"]))
    if message is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode in (1, 2) and message in result.stderr
    assert "Traceback" not in result.stderr


def test_erase_and_prune_on_a_misspelt_path_create_nothing_and_say_so(tmp_path: Path) -> None:
    # Creating an empty store there and reporting "erased 0 sessions" would tell the
    # operator that the user had no data.
    missing = tmp_path / "typo.sqlite3"
    for command in (["erase", "--owner", "ada", "--yes"], ["erase", "a0", "--yes"],
                    ["prune", "--older-than", "1d"], ["prune", "--older-than", "1d",
                                                      "--owner", "ada"]):
        result = run(*command, "-o", f"path={missing}")
        assert result.returncode == 1, command
        assert result.stderr.startswith("Error: backend 'sqlite': no database at"), command
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1
        assert not missing.exists(), command


def test_an_erase_interrupted_midway_says_what_it_erased_and_a_rerun_finishes(
        tmp_path: Path) -> None:
    path = tmp_path / "many.sqlite3"
    total = 20_000
    backend = SqliteBackend(SqliteBackend.Config(path=str(path)))
    backend.create_collection()
    ids = [f"s{number:05d}" for number in range(total)]
    backend.append_many({session_id: numbered_records(1) for session_id in ids})
    now = datetime.now(UTC)
    backend.restore_summaries([SessionSummary(session_id, "ada", None, {}, now, now, 0)
                               for session_id in ids])
    backend.close()

    def left() -> int:
        with sqlite3.connect(path) as connection:
            return int(connection.execute(
                'SELECT count(*) FROM "message_store_sessions"').fetchone()[0])

    process = subprocess.Popen([sys.executable, "-m", "chathistory", "erase", "--owner", "ada",
                                "--yes", "-o", f"path={path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while left() == total and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    output, errors = process.communicate(timeout=300)
    erased = total - left()
    assert 0 < erased < total, "the erase was not caught midway"
    assert process.returncode == 1 and output == ""
    found = re.fullmatch(r"Error: interrupted; by then it had erased (\d+) sessions of owner "
                         r"'ada' (?:\((\d+) messages\)|\(the first chunk was under way: it "
                         r"may be erased too\)); the same command run again erases the "
                         r"rest\n", errors)
    assert found is not None, errors
    said = int(found[1])
    # Caught in the first chunk, it counts 0 and says that chunk was under way.
    assert int(found[2]) == said if found[2] is not None else said == 0
    # A chunk (100 sessions) committed just as Ctrl-C came may be gone but not yet counted.
    assert said <= erased <= said + ERASE_CHUNK
    rerun = run("erase", "--owner", "ada", "--yes", "-o", f"path={path}")
    assert rerun.stdout == (f"erased {total - erased} sessions of owner 'ada' "
                            f"({total - erased} messages)\n")


def test_a_backend_without_the_catalog_says_so(tmp_path: Path) -> None:
    directory = tmp_path / "jsonl"
    result = run("sessions", "--owner", "ada", "-b", "jsonl", "-o", f"directory={directory}")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("lacks the KeepsCatalog capability (owners, titles, "
                                          "metadata, listings, erasure)")
    for command in (["metadata", "s", "k=v"], ["metadata", "s"]):
        result = run(*command, "-b", "jsonl", "-o", f"directory={directory}")
        assert result.stderr.startswith("Error: backend 'jsonl' does not keep metadata:")


def test_prune_by_owner_keeps_the_other_owners_old_sessions(path: str) -> None:
    dry = run("prune", "--older-than", "890h", "--owner", "ada", "--dry-run", "-o",
              f"path={path}", "--json")
    assert json.loads(dry.stdout)["sessions"] == 3  # a0, a1, a2: 40, 39 and 38 days
    done = run("prune", "--older-than", "890h", "--owner", "ada", "-o", f"path={path}")
    assert done.stdout.startswith("deleted 3 sessions of owner 'ada' last written before")
    assert ids(run("sessions", "--oldest", "-o", f"path={path}").stdout) == [
        "a3", "b0", "b1"]


def test_show_export_and_backends_take_json(path: str, tmp_path: Path) -> None:
    shown = run("show", "a1", "--json", "-o", f"path={path}")
    assert [json.loads(line)["data"]["content"] for line in shown.stdout.splitlines()] == [
        "m0", "m1"]
    exported = tmp_path / "out.jsonl"
    report = run("export", "--json", "-f", str(exported), "-o", f"path={path}")
    assert json.loads(report.stdout) == {"sessions": 6, "messages": 21, "summaries": 6,
                                         "missing": []}
    to_stdout = run("export", "a0", "--json", "-o", f"path={path}")
    assert json.loads(to_stdout.stderr) == {"sessions": 1, "messages": 1, "summaries": 1,
                                            "missing": []}
    rows = [json.loads(line) for line in run("backends", "--json").stdout.splitlines()]
    sqlite = next(row for row in rows if row["backend"] == "sqlite")
    assert (sqlite["distribution"], sqlite["ok"], sqlite["status"]) == ("chathistory", True,
                                                                        "ok")


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal: its exit status, stdout, stderr."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "chathistory", *args],
                               stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    output, _ = process.communicate(timeout=120)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return process.returncode, output, shown.decode(errors="replace")


def test_long_commands_show_a_progress_bar_on_a_terminal_unless_quiet(path: str,
                                                                     tmp_path: Path) -> None:
    exported = tmp_path / "all.jsonl"
    status, _, bar = on_a_terminal("export", "-f", str(exported), "-o", f"path={path}")
    assert status == 0 and "6/6" in bar and "session/s" in bar
    target = tmp_path / "target.sqlite3"
    status, _, bar = on_a_terminal("import", str(exported), "-o", f"path={target}")
    # Every line is checked first, which counts the sessions: then the bar has its total.
    assert status == 0 and "checking" in bar and "6/6" in bar and "messages=21" in bar
    status, output, bar = on_a_terminal("erase", "--owner", "bob", "-y", "-o",
                                        f"path={target}")
    assert status == 0 and "2/2" in bar and output.startswith("erased 2 sessions")
    status, _, bar = on_a_terminal("prune", "--older-than", "1d", "-o", f"path={target}")
    assert status == 0 and "4/4" in bar
    status, _, bar = on_a_terminal("export", "-q", "-f", str(exported), "-o", f"path={path}")
    assert status == 0 and "session/s" not in bar
