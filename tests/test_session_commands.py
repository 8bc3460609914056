"""The session commands, run as a user runs them: a separate process, real files."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from chathistory.backends.sqlite import SqliteBackend
from chathistory.catalog import SessionSummary
from chathistory.errors import BackendUnavailableError
from chathistory.session_commands import counted_run
from chathistory.testing import numbered_records
from chathistory.transfer import CHUNK, export_sessions


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chathistory", *args], capture_output=True,
                          text=True, input=stdin, timeout=300, check=False)


def store(path: Path, sessions: int, per_session: int = 3) -> SqliteBackend:
    backend = SqliteBackend(SqliteBackend.Config(path=str(path)))
    backend.create_collection()
    backend.append_many({f"s{number:05d}": numbered_records(per_session, prefix=f"{number}-")
                         for number in range(sessions)})
    return backend


def stored_sessions(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute(
            'SELECT count(*) FROM "message_store_sessions"').fetchone()[0])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.sqlite3"
    store(path, 5).close()
    return path


def test_sessions_lists_ids_counts_and_write_times(source: Path) -> None:
    result = run("sessions", "-o", f"path={source}")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[:2] for row in rows] == [[f"s{n:05d}", "3"] for n in range(5)]
    as_json = run("sessions", "-o", f"path={source}", "--json", "--after", "s00002",
                  "--limit", "1")
    (line,) = as_json.stdout.splitlines()
    row = json.loads(line)
    assert row["session_id"] == "s00003" and row["messages"] == 3
    assert row["last_write"].endswith("+00:00")


def test_read_only_commands_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo.sqlite3"
    for command in (["sessions"], ["export"], ["show", "s"]):
        result = run(*command, "-o", f"path={missing}")
        assert result.returncode == 1, command
        assert result.stderr.startswith("Error: backend 'sqlite': no database at"), command
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert not missing.exists()


def test_read_only_commands_on_a_missing_example_directory_create_nothing(tmp_path: Path
                                                                          ) -> None:
    missing = tmp_path / "typo"
    for command in (["export", "ada"], ["show", "ada"]):
        result = run(*command, "-b", "jsonl", "-o", f"directory={missing}")
        assert (result.returncode, result.stderr) == (
            1, f"Error: backend 'jsonl': no directory '{missing}' (nothing was created; "
               "check the directory option)\n"), command
    assert list(tmp_path.iterdir()) == []


def test_export_then_import_round_trips_and_a_second_import_adds_nothing(
        source: Path, tmp_path: Path) -> None:
    exported = tmp_path / "all.jsonl"
    assert run("export", "-o", f"path={source}", "-f", str(exported)).returncode == 0
    lines = exported.read_text().splitlines()
    # Each session's summary line, then its records.
    assert len(lines) == 15 + 5 and json.loads(lines[0])["session_id"] == "s00000"
    assert set(json.loads(lines[0])) == {"session_id", "summary"}
    target = tmp_path / "target.sqlite3"
    first = run("import", str(exported), "-o", f"path={target}", "--json")
    assert json.loads(first.stdout)["messages_written"] == 15, first.stderr
    again = run("import", "-o", f"path={target}", "--json", stdin=exported.read_text())
    assert json.loads(again.stdout) == {"sessions": 5, "messages_written": 0,
                                        "already_complete": 5, "mismatched": [],
                                        "summaries": 5, "summaries_dropped": 0}
    one = [json.loads(line) for line in
           run("export", "s00001", "-o", f"path={target}").stdout.splitlines()]
    assert [line["record"]["data"]["content"] for line in one[1:]] == ["1-0", "1-1", "1-2"]
    # The summary (owner, title, metadata, both times) came back as it went out.
    assert one[0] == next(json.loads(line) for line in lines
                          if line.startswith('{"session_id":"s00001","summary":'))


def test_copy_copies_everything_checks_counts_and_reruns_as_a_no_op(
        source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite3"
    args = ("copy", "-o", f"path={source}", "--to", "sqlite", "-O", f"path={target}")
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "copied 15 messages in 5 sessions (0 already complete)"
    second = run(*args, "--json")
    assert json.loads(second.stdout) == {"sessions": 5, "messages_written": 0,
                                         "already_complete": 5, "mismatched": [],
                                         "summaries": 5, "summaries_dropped": 0,
                                         "missing": []}


def test_a_copy_killed_midway_is_finished_by_a_rerun_without_duplicates(tmp_path: Path
                                                                         ) -> None:
    source, target = tmp_path / "big.sqlite3", tmp_path / "target.sqlite3"
    total = 3000
    store(source, total, per_session=2).close()
    store(target, 0).close()
    args = [sys.executable, "-m", "chathistory", "copy", "-o", f"path={source}",
            "--to", "sqlite", "-O", f"path={target}", "--chunk", "1"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while stored_sessions(target) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = stored_sessions(target)
    assert 50 <= done < total, "the copy was not caught midway"
    rerun = run("copy", "-o", f"path={source}", "--to", "sqlite", "-O", f"path={target}",
                "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["already_complete"] == done
    assert report["messages_written"] == (total - done) * 2
    assert report["mismatched"] == []
    with sqlite3.connect(target) as connection:
        assert connection.execute('SELECT count(*), count(DISTINCT message || session_id) '
                                  'FROM "message_store"').fetchone() == (total * 2, total * 2)


def test_a_copy_that_ends_with_different_counts_fails(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite3"
    store(target, 0).append("s00002", numbered_records(1, prefix="other-"))
    result = run("copy", "-o", f"path={source}", "--to", "sqlite", "-O", f"path={target}")
    assert result.returncode == 1
    assert "left alone: 1 session whose stored messages are not the start of the source's, " \
           "e.g. 's00002'" in result.stderr
    assert "1 session differs after the copy, e.g. 's00002': 3 messages in the source, 1 in " \
           "the target" in result.stderr
    as_json = run("copy", "-o", f"path={source}", "--to", "sqlite", "-O", f"path={target}",
                  "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["mismatched"] == ["s00002"]


def test_prune_deletes_sessions_older_than_the_age_and_a_dry_run_deletes_none(
        source: Path) -> None:
    dry = run("prune", "-o", f"path={source}", "--older-than", "0s", "--dry-run")
    assert dry.stdout.startswith("would delete 5 sessions"), dry.stderr
    assert stored_sessions(source) == 5
    kept = run("prune", "-o", f"path={source}", "--older-than", "1d", "--json")
    assert json.loads(kept.stdout)["sessions"] == 0
    gone = run("prune", "-o", f"path={source}", "--older-than", "0s")
    assert gone.stdout.startswith("deleted 5 sessions")
    assert stored_sessions(source) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["prune", "--older-than", "soon"], "'soon' is not a duration such as 30d"),
    (["prune", "--older-than", "1000000d"], "'1000000d' reaches back before the year 1"),
    (["prune", "--older-than", "99999999999w"], "'99999999999w' reaches back before the year 1"),
    (["sessions", "-b", "jsonl", "-o", "directory=/tmp/x"],
     "backend 'jsonl' cannot list its sessions"),
    (["prune", "-b", "jsonl", "-o", "directory=/tmp/x", "--older-than", "1d"],
     "backend 'jsonl' keeps no write times"),
    (["copy", "--to", "sqlite", "-O", "nope=1"], "unknown option 'nope'"),
])
def test_mistakes_are_one_line_errors(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_prune_on_a_backend_with_write_times_but_no_deletes_says_what_it_lacks() -> None:
    # Rockset lists each session's last write but cannot delete by it: saying it keeps
    # no write times (as for a backend that has none) would be wrong.
    emulator = pytest.importorskip("rockset_emulator")
    with emulator.RocksetEmulator(api_key="test-key") as emu:
        result = run("prune", "--older-than", "90d", "-b", "rockset", "-o", "api_key=test-key",
                     "-o", f"host={emu.url}", "-o", "collection=chat")
    assert result.returncode == 1
    assert result.stderr == ("Error: backend 'rockset' cannot delete sessions by age: it "
                             "lacks the PrunesSessions capability (it lists their last "
                             "writes, but deletes no session by them)\n")


@pytest.mark.parametrize(("backend", "option"), [
    ("redis", "url=redis://127.0.0.1:{port}"),
    ("postgres", "conninfo=postgresql://127.0.0.1:{port}/test"),
    ("sqlalchemy", "url=mysql+pymysql://root@127.0.0.1:{port}/test"),
])
def test_a_server_that_is_down_ends_with_one_error_line_after_the_retries(
        backend: str, option: str) -> None:
    pytest.importorskip(f"chathistory_{backend}")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("sessions", "--owner", "ada", "-b", backend, "-o", option.format(port=port))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1].startswith(f"Error: backend '{backend}' is unavailable after 4 attempts")
    assert all("and is retried" in line for line in lines[:-1]), lines
    assert f"127.0.0.1:{port}" in lines[-1] and "Traceback" not in result.stderr


def test_clear_deletes_one_session_and_says_when_there_was_none(source: Path) -> None:
    cleared = run("clear", "s00001", "-o", f"path={source}")
    assert cleared.returncode == 0 and cleared.stderr == "cleared session 's00001'\n"
    assert stored_sessions(source) == 4
    nobody = run("clear", "nobody", "-o", f"path={source}")
    assert nobody.returncode == 0
    assert nobody.stderr == "no session 'nobody': it holds no messages, nothing was deleted\n"
    assert stored_sessions(source) == 4


def test_export_names_the_ids_that_hold_nothing(source: Path) -> None:
    result = run("export", "s00001", "nobody", "-o", f"path={source}")
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1 + 3
    assert result.stderr.splitlines() == ["no session 'nobody': nothing exported for it",
                                          "exported 3 messages in 1 session"]
    two = run("export", "nobody", "zed", "-o", f"path={source}")
    assert two.stderr.splitlines() == ["no sessions 'nobody', 'zed': nothing exported for them",
                                       "exported 0 messages in 0 sessions"]


def test_copy_names_the_ids_that_hold_nothing_and_does_not_count_them(
        source: Path, tmp_path: Path) -> None:
    # It said "copied 3 messages in 2 sessions" of s00001 and an id the source never held.
    target = ["--to", "sqlite", "-O", f"path={tmp_path / 'target.sqlite3'}"]
    result = run("copy", "s00001", "nobody", "-o", f"path={source}", *target)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "copied 3 messages in 1 session (0 already complete)\n"
    assert result.stderr == "no session 'nobody': nothing copied for it\n"
    as_json = json.loads(run("copy", "nobody", "zed", "-o", f"path={source}", *target,
                             "--json").stdout)
    assert (as_json["sessions"], as_json["missing"]) == (0, ["nobody", "zed"])


def test_export_into_a_reader_that_stops_ends_quietly(tmp_path: Path) -> None:
    path = tmp_path / "big.sqlite3"
    store(path, 2000, per_session=5).close()  # far more than a pipe's buffer
    export = subprocess.Popen([sys.executable, "-m", "chathistory", "export",
                               "-o", f"path={path}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-n", "2"], stdin=export.stdout, capture_output=True,
                          timeout=120, check=True)
    assert export.stdout is not None and export.stderr is not None
    export.stdout.close()  # only head holds the pipe's reading end now
    errors = export.stderr.read().decode()
    assert export.wait(timeout=120) == 0, errors
    assert errors == ""
    assert len(head.stdout.splitlines()) == 2


def test_an_empty_listing_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    store(path, 0).close()
    result = run("sessions", "-o", f"path={path}")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "(no sessions)\n")
    after = run("sessions", "-o", f"path={path}", "--after", "m", "--json")
    assert (after.stdout, after.stderr) == ("", "(no sessions after 'm')\n")


def test_summaries_count_in_the_singular_and_plural(tmp_path: Path) -> None:
    one = tmp_path / "one.sqlite3"
    store(one, 1, per_session=1).close()
    exported = run("export", "-o", f"path={one}")
    assert exported.stderr == "exported 1 message in 1 session\n"
    imported = run("import", "-o", f"path={tmp_path / 'copy.sqlite3'}", stdin=exported.stdout)
    assert imported.stdout == "imported 1 message in 1 session (0 already complete)\n"
    pruned = run("prune", "-o", f"path={one}", "--older-than", "0s", "--dry-run")
    assert pruned.stdout.startswith("would delete 1 session last written before ")


BOGUS = '{"session_id":"ada","record":{"type":"bogus","data":{"content":"?"}}}'


def test_import_refuses_a_bad_line_anywhere_and_writes_nothing(source: Path,
                                                              tmp_path: Path) -> None:
    exported = run("export", "-o", f"path={source}").stdout.splitlines()
    target = tmp_path / "target.sqlite3"
    lines = [*exported[:7], BOGUS, *exported[7:]]
    result = run("import", "-o", f"path={target}", stdin="\n".join(lines))
    assert result.returncode == 1
    assert result.stderr == ("Error: line 8: the record is not a LangChain message: unknown "
                             "message type 'bogus'\n")
    assert not target.exists()
    store(target, 0).close()
    assert run("import", "-o", f"path={target}", stdin="\n".join(lines)).returncode == 1
    assert stored_sessions(target) == 0


def test_import_into_a_session_holding_other_messages_says_what_to_do(
        source: Path, tmp_path: Path) -> None:
    one = run("export", "s00001", "-o", f"path={source}").stdout
    new = one.replace('"1-', '"new-')
    result = run("import", "-o", f"path={source}", stdin=new)
    assert result.returncode == 1
    assert result.stderr == (
        "left alone: 1 session whose stored messages are not the start of the file's, e.g. "
        "'s00001' (clear it first, or add the file's records after it with --append)\n")
    appended = run("import", "-o", f"path={source}", "--append", stdin=new)
    assert appended.returncode == 0, appended.stderr
    assert appended.stdout == "imported 3 messages in 1 session (0 already complete)\n"
    shown = run("show", "s00001", "-o", f"path={source}").stdout.split()
    assert shown == ["human:", "1-0", "human:", "1-1", "human:", "1-2",
                     "human:", "new-0", "human:", "new-1", "human:", "new-2"]


def test_show_and_export_of_a_session_holding_no_message_fail_with_one_line(
        source: Path) -> None:
    backend = SqliteBackend(SqliteBackend.Config(path=str(source)))
    backend.append("s00001", [{"type": "bogus", "data": {"content": "?"}}])
    backend.close()
    expected = ("Error: session 's00001': record 3 cannot be read as a message: unknown "
                "message type 'bogus'\n")
    for command in (["show", "s00001"], ["export"], ["export", "s00001"]):
        result = run(*command, "-o", f"path={source}")
        assert (result.returncode, result.stderr) == (1, expected), command
    limited = run("show", "s00001", "-n", "2", "-o", f"path={source}")
    assert limited.stderr == expected.replace("record 3", "record -1")


def test_on_a_terminal_copy_shows_a_progress_bar(source: Path, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    target = tmp_path / "target.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "chathistory", "copy", "-o", f"path={source}", "--to", "sqlite",
         "-O", f"path={target}", "--chunk", "2"],
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
    bar = shown.decode(errors="replace")
    assert process.returncode == 0
    assert "5/5" in bar and "session/s" in bar and "messages=15" in bar
    assert output.startswith("copied 15 messages")


def test_an_import_that_fails_midway_says_what_was_written_and_that_a_rerun_is_safe() -> None:
    # 200 sessions fill the first chunk; the store refuses the 201st session's record.
    lines = [json.dumps({"session_id": f"s{number:04d}", "record": {
        "type": "human", "data": {"content": "x\x00" if number == 200 else "x"}}})
        for number in range(201)]
    result = run("import", "-b", "memory", "-o", "refuse_nul=true", stdin="\n".join(lines))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: backend 'memory'")
    assert result.stderr.endswith("; by then it had imported 200 sessions (200 messages); the "
                                  "same import run again writes only what is missing\n")
    assert len(result.stderr.splitlines()) == 1


def interrupt_once(args: list[str], started: Callable[[], bool]) -> str:
    """Run the command, send it SIGINT (Ctrl-C) once ``started()`` says it is midway; check
    that it failed with nothing on stdout, and return its stderr."""
    process = subprocess.Popen([sys.executable, "-m", "chathistory", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not started() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    output, errors = process.communicate(timeout=300)
    assert process.returncode == 1 and output == "", errors
    return errors


def said_done(errors: str, verb: str, rerun: str) -> tuple[int, int]:
    """The sessions and messages an interrupted command's error line says it had ``verb``."""
    found = re.fullmatch(rf"Error: interrupted; by then it had {verb} (\d+) sessions "
                         rf"\((\d+) messages\); {rerun}\n", errors)
    assert found is not None, errors
    return int(found[1]), int(found[2])


def test_a_copy_interrupted_midway_says_what_it_copied_and_that_a_rerun_finishes(
        tmp_path: Path) -> None:
    source, target = tmp_path / "big.sqlite3", tmp_path / "target.sqlite3"
    total = 3000
    store(source, total, per_session=2).close()
    store(target, 0).close()
    errors = interrupt_once(["copy", "-o", f"path={source}", "--to", "sqlite", "-O",
                             f"path={target}", "--chunk", "1"],
                            lambda: stored_sessions(target) >= 50)
    copied, messages = said_done(errors, "copied",
                                 "the same copy run again writes only what is missing")
    assert messages == copied * 2
    # The session being written when Ctrl-C came may be stored without being counted.
    assert copied <= stored_sessions(target) <= copied + 1 < total
    rerun = run("copy", "-o", f"path={source}", "--to", "sqlite", "-O", f"path={target}",
                "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["mismatched"] == []
    assert stored_sessions(target) == total


def test_an_import_interrupted_midway_says_what_it_imported_and_that_a_rerun_finishes(
        tmp_path: Path) -> None:
    exported, target = tmp_path / "all.jsonl", tmp_path / "target.sqlite3"
    total = 20_000
    source = store(tmp_path / "source.sqlite3", total, per_session=1)
    with exported.open("w") as out:
        export_sessions(source, out)
    source.close()
    store(target, 0).close()
    # Once a second chunk is stored, the first was counted (a chunk stored but not yet
    # counted when Ctrl-C comes is not in the count: the rerun finds it whole).
    errors = interrupt_once(["import", str(exported), "-o", f"path={target}"],
                            lambda: stored_sessions(target) > 200)
    imported, messages = said_done(errors, "imported",
                                   "the same import run again writes only what is missing")
    assert imported == messages and imported % 200 == 0  # whole chunks
    assert imported <= stored_sessions(target) < total
    rerun = run("import", str(exported), "-o", f"path={target}", "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["already_complete"] >= imported
    assert report["messages_written"] == total - report["already_complete"]
    assert stored_sessions(target) == total


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux: its /proc/PID/fd links)."""
    wanted = str(path.resolve())
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") == wanted:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def interrupt_in_the_first_chunk(args: list[str], target: Path) -> str:
    """Run the command while this test holds ``target``'s write lock, so that its first
    chunk cannot be stored (the command waits for the lock), and send it SIGINT once it
    has opened ``target``: it is then writing its first chunk, with nothing counted.
    Release the lock, check that it failed with nothing on stdout, return its stderr."""
    lock = sqlite3.connect(target, timeout=0, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        process = subprocess.Popen([sys.executable, "-m", "chathistory", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not has_open(process.pid, target) and process.poll() is None:
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    output, errors = process.communicate(timeout=300)
    assert process.returncode == 1 and output == "", errors
    return errors


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/fd")
@pytest.mark.parametrize("command", ["copy", "import"])
def test_a_command_interrupted_in_its_first_chunk_says_so_and_a_rerun_finishes(
        tmp_path: Path, command: str) -> None:
    # It said only "Aborted!", though the chunk under way may have been stored.
    source, target = tmp_path / "source.sqlite3", tmp_path / "target.sqlite3"
    total = 500
    store(source, total, per_session=2).close()
    store(target, 0).close()
    exported = tmp_path / "all.jsonl"
    if command == "copy":
        args = ["copy", "-o", f"path={source}", "--to", "sqlite", "-O", f"path={target}"]
        verb, rerun = "copied", "the same copy run again writes only what is missing"
    else:
        exporting = SqliteBackend(SqliteBackend.Config(path=str(source)))
        with exported.open("w") as out:
            export_sessions(exporting, out)
        exporting.close()
        args = ["import", str(exported), "-o", f"path={target}"]
        verb, rerun = "imported", "the same import run again writes only what is missing"
    errors = interrupt_in_the_first_chunk(args, target)
    assert errors == (f"Error: interrupted; by then it had {verb} 0 sessions (the first chunk "
                      f"was under way: it may be {verb} too); {rerun}\n")
    assert stored_sessions(target) <= CHUNK
    finished = run(*args, "--json")
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["mismatched"] == []
    assert stored_sessions(target) == total


def test_only_a_ctrl_c_in_the_first_chunk_says_it_may_be_done() -> None:
    rerun = "the same command run again erases the rest"
    with pytest.raises(click.ClickException) as caught, \
            counted_run(300, "erased", rerun, True, whose=" of owner 'ada'"):
        raise KeyboardInterrupt
    assert caught.value.message == (
        "interrupted; by then it had erased 0 sessions of owner 'ada' (the first chunk was "
        f"under way: it may be erased too); {rerun}")
    # A failure says what failed (a failed chunk is not stored), as before.
    with pytest.raises(click.ClickException, match=r"^backend 'memory' is unavailable$"), \
            counted_run(300, "erased", rerun, True):
        raise BackendUnavailableError("backend 'memory' is unavailable")
    # import: while it checks its lines nothing is written yet.
    with pytest.raises(KeyboardInterrupt), \
            counted_run(None, "imported", rerun, True, writing=False):
        raise KeyboardInterrupt


def test_an_export_that_fails_midway_says_what_it_wrote_and_that_a_rerun_starts_over(
        tmp_path: Path) -> None:
    path, exported = tmp_path / "chat.sqlite3", tmp_path / "out.jsonl"
    backend = store(path, 300)
    backend.append("s00250", [{"type": "bogus", "data": {"content": "?"}}])
    backend.close()
    result = run("export", "-f", str(exported), "-o", f"path={path}")
    assert result.returncode == 1
    # 200 sessions a chunk: the first chunk is whole in the file, the second stops at s00250.
    assert result.stderr == (
        "Error: session 's00250': record 3 cannot be read as a message: unknown message type "
        "'bogus'; by then it had exported 200 sessions (600 messages); the output is "
        "incomplete; the same export run again starts over\n")


def test_a_prune_interrupted_midway_says_how_many_it_deleted_and_that_a_rerun_finishes(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    total = 100_000
    backend = store(path, total, per_session=1)
    long_ago = datetime.now(UTC) - timedelta(days=400)
    backend.restore_summaries([SessionSummary(f"s{number:05d}", None, None, {}, long_ago,
                                              long_ago, 0) for number in range(total)])
    backend.close()

    def deleting() -> bool:
        # The prune's transaction holds the write lock while it deletes.
        try:
            with sqlite3.connect(path, timeout=0) as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.rollback()
        except sqlite3.OperationalError:
            return True
        return False

    errors = interrupt_once(["prune", "--older-than", "30d", "-o", f"path={path}"], deleting)
    deleted = total - stored_sessions(path)
    found = re.fullmatch(r"Error: interrupted; by then it had deleted (\d+) of the 100000 "
                         r"sessions last written before \S+; the same command run again "
                         r"deletes the rest\n", errors)
    assert found is not None, errors
    assert int(found[1]) == deleted
    rerun = run("prune", "--older-than", "30d", "-o", f"path={path}")
    assert rerun.stdout.startswith(f"deleted {total - deleted} sessions last written before")
    assert stored_sessions(path) == 0


def test_import_from_a_terminal_without_a_file_says_what_to_give(tmp_path: Path) -> None:
    # It sat waiting for an export to be typed in, saying nothing.
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "chathistory", "import", "-o", f"path={tmp_path / 'x.db'}"],
            stdin=terminal, capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 2, result.stderr
    assert "give the file export wrote (chathistory import FILE)" in result.stderr
    assert not (tmp_path / "x.db").exists()
