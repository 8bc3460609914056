import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import Field

from chathistory import ChatHistory
from chathistory.cli import describe, main


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chathistory", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_backends_lists_name_distribution_version_and_status() -> None:
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["BACKEND", "DISTRIBUTION", "STATUS"]
    assert any(line.split()[:2] == ["sqlite", "chathistory"] and line.endswith("  ok")
               for line in lines)
    assert any(line.split()[:2] == ["jsonl", "chathistory-example"] for line in lines)


def broken_distribution(site: Path) -> dict[str, str]:
    """An installed distribution with two broken backends; the environment that sees it."""
    dist_info = site / "chathistory_broken-0.3.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: chathistory-broken\nVersion: 0.3\n")
    (dist_info / "entry_points.txt").write_text(
        "[chathistory.backends]\nbroken = broken_plugin\nneeds_driver = needs_driver_plugin\n")
    (site / "broken_plugin.py").write_text("import no_such_sdk_module\n")
    (site / "needs_driver_plugin.py").write_text(
        "from chathistory import hookimpl\n\n"
        "@hookimpl\n"
        "def chathistory_backend():\n"
        "    import no_such_driver_module\n")
    return {"PYTHONPATH": str(site)}


def test_backends_marks_a_backend_that_fails_to_import_as_broken(tmp_path: Path) -> None:
    result = run("backends", env=broken_distribution(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "chathistory-broken 0.3" in rows["broken"]
    assert "broken: plugin 'broken_plugin' from chathistory-broken failed to load: " \
           "ModuleNotFoundError: No module named 'no_such_sdk_module'" in rows["broken"]
    assert "broken: backend 'needs_driver' from chathistory-broken cannot be used: " \
           "No module named 'no_such_driver_module'" in rows["needs_driver"]
    assert rows["sqlite"].endswith("  ok")
    assert "Traceback" not in result.stderr


def driverless_distribution(site: Path) -> dict[str, str]:
    """A backend shaped as the shipped ones, installed without the driver it requires.

    Its hook imports only the backend's module, which imports the driver in
    ``__init__``, as chathistory-redis does: `pip install --no-deps`, or the
    driver uninstalled since.
    """
    dist_info = site / "chathistory_driverless-0.2.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: chathistory-driverless\nVersion: 0.2\n"
        "Requires-Dist: chathistory\nRequires-Dist: no-such-driver-dist>=1.0\n"
        "Requires-Dist: no-such-test-tool; extra == 'test'\n"
        "Requires-Dist: no-such-windows-dist; sys_platform == 'win32'\n"
        "Requires-Dist: click<1\n")
    (dist_info / "entry_points.txt").write_text(
        "[chathistory.backends]\ndriverless = driverless_plugin\n")
    (site / "driverless_plugin.py").write_text(
        "from chathistory import BackendConfig, hookimpl\n\n"
        "class DriverlessBackend:\n"
        "    Config = BackendConfig\n\n"
        "    def __init__(self, config):\n"
        "        import no_such_driver_module\n\n"
        "@hookimpl\n"
        "def chathistory_backend():\n"
        "    return DriverlessBackend\n")
    return {"PYTHONPATH": str(site)}


def test_a_backend_installed_without_its_driver_is_broken_and_says_what_to_install(
        tmp_path: Path) -> None:
    # backends said "ok", and a command on it ended in a ModuleNotFoundError traceback.
    env = driverless_distribution(tmp_path / "site")
    listed = run("backends", env=env)
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert rows["driverless"].endswith(
        "broken: backend 'driverless' from chathistory-driverless cannot be used: it "
        f"requires no-such-driver-dist, which is not installed; click<1, where "
        f"{version('click')} is installed. Reinstall "
        "chathistory-driverless with its dependencies."), listed.stdout
    assert rows["sqlite"].endswith("  ok")
    used = run("show", "s", "-b", "driverless", env=env)
    assert (used.returncode, used.stdout) == (1, "")
    assert used.stderr == (
        "Error: backend 'driverless' from chathistory-driverless cannot be used: No module "
        "named 'no_such_driver_module'. Reinstall chathistory-driverless with its "
        "dependencies.\n")


def test_an_unknown_name_in_load_plugins_is_a_one_line_warning() -> None:
    result = run("backends", env={"CHATHISTORY_LOAD_PLUGINS": "sqlite,sqlit"})
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["BACKEND", "sqlite"]
    assert result.stderr.splitlines() == [
        "Warning: CHATHISTORY_LOAD_PLUGINS names 'sqlit', which no installed backend "
        "provides (installed: " + result.stderr.split("(installed: ")[1].split(")")[0] + ")"]
    assert "memory" in result.stderr and "Traceback" not in result.stderr
    result = run("show", "s", "-b", "sqlit", env={"CHATHISTORY_LOAD_PLUGINS": "sqlit"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("Warning: CHATHISTORY_LOAD_PLUGINS names")
    assert "no backend named 'sqlit'" in result.stderr.splitlines()[1]


def test_options_are_converted_to_each_fields_type(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.sqlite3")
    ChatHistory("s", backend="sqlite", path=path).add_user_message("hi")
    result = run("show", "s", "-o", f"path={path}", "-o", "timeout=2.5",
                 "-o", "table=message_store")
    assert result.returncode == 0, result.stderr
    assert result.stdout == " human: hi\n"
    result = run("show", "s", "-o", f"path={path}", "-o", "timeout=soon")
    assert result.returncode == 1
    assert "option 'timeout': Input should be a valid number" in result.stderr


def test_a_strict_integer_option_takes_its_text_form() -> None:
    from chathistory.backend import BackendConfig, validate_options

    class Config(BackendConfig):
        ttl: int | None = Field(None, gt=0, strict=True)
        keep: bool = False

    config = validate_options("x", Config, {"ttl": "600", "keep": "true"}, from_strings=True)
    assert config.model_dump() == {"ttl": 600, "keep": True}


def test_an_option_that_takes_a_python_object_says_text_cannot_give_it() -> None:
    # It said "option 'client' must be a redis.Redis or redis.RedisCluster, not str", or
    # "Input should be callable": what to pass, but not that a command line cannot.
    from collections.abc import Callable

    from chathistory.backend import BackendConfig, validate_options
    from chathistory.errors import ConfigError

    class Config(BackendConfig):
        client: Any = None
        make_id: Callable[[], str] | None = None
        connect_args: dict[str, Any] = Field(default_factory=dict)
        url: str | None = None

    with pytest.raises(ConfigError) as given_as_text:
        validate_options("x", Config, {"client": "c", "make_id": "uuid4", "url": "u"},
                         from_strings=True)
    assert str(given_as_text.value) == (
        "backend 'x': option 'client' takes a Python object, which text cannot give (pass "
        "it from Python code; on the command line, give the options it is made from); "
        "option 'make_id' takes a Python object, which text cannot give (pass it from "
        "Python code; on the command line, give the options it is made from)")
    with pytest.raises(ConfigError, match="option 'connect_args' takes a Python object"):
        validate_options("x", Config, {"connect_args": "{}"}, from_strings=True)
    assert validate_options("x", Config, {"client": object()}).client is not None
    assert validate_options("x", Config, {"url": "u"}, from_strings=True).url == "u"


def test_show_limit_zero_says_how_many_it_did_not_show(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.sqlite3")
    ChatHistory("s", backend="sqlite", path=path).add_messages(
        [HumanMessage("a"), AIMessage("b"), HumanMessage("c")])
    result = run("show", "s", "-o", f"path={path}", "-n", "0")
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == "(showed none of the 3 messages in session 's': --limit 0)\n"
    result = run("show", "empty", "-o", f"path={path}", "-n", "0")
    assert result.stderr == "(no messages in session 'empty')\n"


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
    path = tmp_path / "chat.sqlite3"
    ChatHistory("somebody", backend="sqlite", path=str(path)).add_messages([HumanMessage("hi")])
    result = run("show", "nobody", "-o", f"path={path}")
    assert result.returncode == 0
    assert result.stdout == ""
    assert "no messages in session 'nobody'" in result.stderr


def test_show_of_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "misspelt.sqlite3"
    result = run("show", "nobody", "-o", f"path={path}")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: backend 'sqlite': no database at")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not path.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["show", "s", "--backend", "nope"], "no backend named 'nope'; installed backends:"),
    (["show", "s", "-o", "pth=x"], "unknown option 'pth'"),
    (["show", "s", "-o", "novalue"], "is not NAME=VALUE"),
    (["show", "", "-o", "path=/tmp/unused.sqlite3"], "session_id must not be empty"),
    (["show", "s", "--limit", "-3"], "-3 is not in the range"),
    (["show", "s", "-o", "table=bad name"], "option 'table'"),
    (["show", "s", "-o", "timeout=-1"], "option 'timeout': Input should be greater than 0"),
    (["show", "s", "-b", "jsonl"], "option 'directory' is required"),
])
def test_user_mistakes_are_one_line_errors_without_tracebacks(args: list[str], message: str
                                                              ) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "argument"), [
    (["erase", b"\xff", "--yes"], "'[SESSION_IDS]...'"),
    (["erase", "--owner", b"ada\xff", "--yes"], "'--owner'"),
    (["show", b"\xff"], "'SESSION_ID'"),
    (["clear", b"\xff"], "'SESSION_ID'"),
    (["export", "s", b"\xff"], "'[SESSION_IDS]...'"),
    (["copy", b"\xff", "--to", "memory"], "'[SESSION_IDS]...'"),
    (["title", "s", b"\xff"], "'TITLE'"),
    (["owner", b"\xff", "ada"], "'SESSION_ID'"),
    (["metadata", "s", b"plan=\xff"], "'[KEY=VALUE]...'"),
    (["sessions", "--where", b"plan=\xff"], "'--where'"),
])
def test_text_that_is_not_utf8_is_a_usage_error_naming_the_argument(
        tmp_path: Path, args: list[str | bytes], argument: str) -> None:
    # A shell variable holding bytes (`erase $'\xff'` under a UTF-8 locale) reaches
    # Python as surrogate escapes, which no store can encode.
    path = tmp_path / "chat.sqlite3"
    ChatHistory("s", backend="sqlite", path=str(path)).add_user_message("hi")
    result = subprocess.run([sys.executable, "-m", "chathistory", *args, "-o", f"path={path}"],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 2, result.stderr
    error = result.stderr.splitlines()[-1]
    bad = next(arg for arg in args if isinstance(arg, bytes))
    assert error == f"Error: Invalid value for {argument}: {bad!r} is not valid UTF-8 text"
    assert "Traceback" not in result.stderr


def test_an_unreadable_database_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    result = run("show", "s", "-o", f"path={tmp_path / 'dir.sqlite3'}")
    assert result.returncode == 1
    assert "dir.sqlite3' is a directory: give the path of a database file" in result.stderr
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


def test_redis_ttl_from_the_command_line_is_an_int() -> None:
    pytest.importorskip("chathistory_redis")
    from chathistory import backend_class, validate_options

    config = validate_options("redis", backend_class("redis").Config, {"ttl": "600"},
                              from_strings=True)
    assert config.model_dump()["ttl"] == 600


def test_the_suite_keeps_out_of_the_users_data(users_data_dir: Path) -> None:
    """A command run with no path (as `make demo` runs one) stores in this run's data home."""
    data_home = Path(os.environ["XDG_DATA_HOME"])
    assert "CHATHISTORY_SQLITE_PATH" not in os.environ
    assert not data_home.is_relative_to(users_data_dir)
    assert not users_data_dir.is_relative_to(data_home)
    result = run("demo", "--session", "kept-out")
    assert result.returncode == 0, result.stderr
    stored = data_home / "chathistory" / "chathistory.sqlite3"
    assert f"stored in {stored}:" in result.stdout
    assert [m.type for m in ChatHistory("kept-out", path=str(stored)).messages][:2] == [
        "human", "ai"]


def test_the_cli_names_no_backend_module() -> None:
    """The default backend's path comes from its Config through the registry (issue 18)."""
    code = ("import sys, chathistory.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('chathistory.backends.')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert output.strip() == "[]"
    source = Path(sys.modules["chathistory.cli"].__file__ or "").read_text()
    assert "chathistory.backends" not in source


def test_the_top_help_says_how_to_give_a_backend_and_its_options() -> None:
    shown = CliRunner().invoke(main, ["--help"]).output
    assert "-b BACKEND (default sqlite)" in shown and "-o NAME=VALUE" in shown
    assert "docs/backends/<name>.md" in shown
