import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from chathistory import ChatHistory
from chathistory.cli import describe, main


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


def test_demo_runs_an_agent_then_a_second_process_reads_the_history_back(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "demo.sqlite3"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-m", "chathistory", "demo",
         "--path", str(path), "--session", "demo-test"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    conversation, _, read_back = result.stdout.partition("A second process reads it back")
    assert conversation.count("  you: ") == 3
    # Each turn the model is sent the system prompt, the stored history and the new input.
    for line in ("[the model was sent 2, then 4 messages; 4 are stored]",
                 "[the model was sent 6, then 8 messages; 8 are stored]",
                 "[the model was sent 10 messages; 10 are stored]"):
        assert line in conversation
    assert "Paris was warmer" in conversation  # answered from the stored history alone
    stored = ChatHistory("demo-test", backend="sqlite", path=str(path)).messages
    assert read_back.splitlines()[1:] == [f"{m.type:>6}: {describe(m)}" for m in stored]
    assert '    ai: -> get_weather(city="Paris")' in read_back
    assert "  tool: [get_weather] sunny, 21 °C" in read_back


def test_show_describes_tool_calls_and_list_content_readably() -> None:
    call = {"name": "search", "args": {"q": "café", "n": 3}, "id": "c1", "type": "tool_call"}
    assert describe(AIMessage("Looking.", tool_calls=[call])) == (
        'Looking. -> search(q="café", n=3)')
    assert describe(AIMessage("", tool_calls=[call])) == '-> search(q="café", n=3)'
    content: list[str | dict[str, Any]] = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert describe(HumanMessage(content=content)) == "What is this? [image_url]"
    assert describe(ToolMessage("a cat", tool_call_id="c1", name="search")) == "[search] a cat"
