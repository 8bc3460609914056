import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage

from chathistory import ChatHistory
from chathistory.cli import main


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chathistory", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_backends_lists_name_distribution_and_version() -> None:
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["BACKEND", "DISTRIBUTION"]
    assert any(line.split()[:2] == ["sqlite", "chathistory"] for line in lines)
    assert any(line.split()[:2] == ["jsonl", "chathistory-example"] for line in lines)


def test_show_prints_a_session_oldest_first_and_honours_limit(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.sqlite3")
    ChatHistory("s 1", backend="sqlite", path=path).add_messages(
        [HumanMessage("first"), AIMessage("second"), HumanMessage("third")])
    result = CliRunner().invoke(main, ["show", "s 1", "-o", f"path={path}"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [" human: first", "    ai: second", " human: third"]
    result = CliRunner().invoke(main, ["show", "s 1", "-o", f"path={path}", "--limit", "1"])
    assert result.output.splitlines() == [" human: third"]


def test_show_of_an_empty_session_says_so_on_stderr(tmp_path: Path) -> None:
    result = run("show", "nobody", "-o", f"path={tmp_path / 'chat.sqlite3'}")
    assert result.returncode == 0
    assert result.stdout == ""
    assert "no messages in session 'nobody'" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["show", "s", "--backend", "nope"], "no backend named 'nope'; installed backends:"),
    (["show", "s", "-o", "pth=x"], "unknown option 'pth'"),
    (["show", "s", "-o", "novalue"], "is not NAME=VALUE"),
    (["show", "", "-o", "path=/tmp/unused.sqlite3"], "session_id must not be empty"),
    (["show", "s", "--limit", "-3"], "-3 is not in the range"),
    (["show", "s", "-o", "table=bad name"], "option 'table'"),
])
def test_user_mistakes_are_one_line_errors_without_tracebacks(args: list[str], message: str
                                                              ) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_an_unreadable_database_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    result = run("show", "s", "-o", f"path={tmp_path / 'dir.sqlite3'}")
    assert result.returncode == 1
    assert "cannot open" in result.stderr or "unable to open" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_talks_then_a_second_process_reads_the_history_back(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    result = run("demo", "--path", str(path), "--session", "demo-test")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    conversation, _, read_back = result.stdout.partition("A second process reads it back")
    assert conversation.count("  you: ") == 3
    # The history reaches the model: system + 0, 2, 4 stored messages + the question.
    for sent, stored in ((2, 2), (4, 4), (6, 6)):
        assert f"[the model was sent {sent} messages; {stored} are stored]" in conversation
    assert read_back.splitlines()[1:] == [
        f"{m.type:>6}: {m.content}"
        for m in ChatHistory("demo-test", backend="sqlite", path=str(path)).messages]
    assert len(read_back.splitlines()[1:]) == 6
