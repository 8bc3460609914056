"""The documentation shows code that is true."""

import ast
import inspect
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

import chathistory.testing
from chathistory import ChatHistory, ChatHistoryMiddleware, get_backend, history_factory
from chathistory.cli import main
from chathistory.history import DEFAULT_BACKEND
from chathistory.registry import default_registry

ROOT = Path(__file__).resolve().parents[1]
WRITING_A_BACKEND = ROOT / "docs" / "writing-a-backend.md"
BACKEND_REFERENCE = ROOT / "docs" / "backend-reference.md"

# A file's path on a line of its own, then a blank line, then the fenced code block.
FILE_BLOCK = re.compile(r"^`(?P<path>[^`\n]+)`:\n\n```\w*\n(?P<code>.*?)^```$",
                        re.MULTILINE | re.DOTALL)


def test_writing_a_backend_shows_every_file_of_the_example_as_it_is() -> None:
    text = WRITING_A_BACKEND.read_text() + BACKEND_REFERENCE.read_text()
    shown = {match["path"]: match["code"] for match in FILE_BLOCK.finditer(text)}
    example = ROOT / "tests" / "example_backend"
    files = {str(path.relative_to(ROOT)) for path in example.rglob("*")
             if path.suffix in {".py", ".toml"} and "__pycache__" not in path.parts}
    assert set(shown) == files
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(), f"{path} differs from its block in the docs"


def test_writing_a_backend_needs_no_snippet_includes() -> None:
    """GitHub shows the page as plain Markdown, where includes are not expanded."""
    assert "--8<--" not in WRITING_A_BACKEND.read_text()


# -- Every backend, option and CLI flag a page names exists ------------------------------

PAGES = sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("docs/backends/*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`(chathistory [^`\n]+)`")
FLAG = re.compile(r"^--?[A-Za-z][-\w]*$")
# Calls that take a backend by name, and the keyword or position that names it.
BACKEND_CALLS = {"get_backend": 0, "history_factory": 0, "ChatHistoryMiddleware": 0,
                 "ChatHistory": "backend"}
CALLABLES: dict[str, Callable[..., Any]] = {
    "get_backend": get_backend, "history_factory": history_factory,
    "ChatHistoryMiddleware": ChatHistoryMiddleware, "ChatHistory": ChatHistory}
OWN_PARAMETERS = {name: set(inspect.signature(function).parameters)
                  for name, function in CALLABLES.items()}


def _is_placeholder(word: str) -> bool:
    return word.isupper() or word in {"...", "…"} or not word


def _option_names(backend: str) -> set[str]:
    fields = default_registry.backend_class(backend).Config.model_fields
    return set(fields) | {field.alias for field in fields.values() if field.alias}


def _check_backend(name: str, where: str) -> list[str]:
    if _is_placeholder(name) or name in {info.name for info in default_registry.available()}:
        return []
    return [f"{where}: no backend named {name!r}"]


def _check_options(backend: str, names: list[str], where: str) -> list[str]:
    known = {info.name for info in default_registry.available()}
    if backend not in known:
        return []  # reported as an unknown backend
    valid = _option_names(backend)
    return [f"{where}: backend {backend!r} has no option {name!r}"
            for name in names if not _is_placeholder(name) and name not in valid]


def _command_lines(text: str) -> list[str]:
    """Every ``chathistory ...`` command a page shows: in code blocks, and inline."""
    commands = []
    for block in FENCE.finditer(text):
        if block["lang"] == "python":
            continue
        for line in block["code"].replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("chathistory "):
                commands.append(line)
    commands += INLINE.findall(FENCE.sub("", text))
    return commands


def check_commands(text: str, where: str) -> list[str]:
    """Problems with the CLI commands ``text`` shows: commands, flags, backends, options."""
    problems = []
    for line in _command_lines(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if len(words) < 2 or words[1].startswith("-") or _is_placeholder(words[1]):
            continue
        command = main.commands.get(words[1])
        if command is None:
            problems.append(f"{where}: `{line}`: no command {words[1]!r}")
            continue
        flags = {flag for param in command.params if isinstance(param, click.Option)
                 for flag in [*param.opts, *param.secondary_opts]} | {"-h", "--help"}
        backends = {"source": DEFAULT_BACKEND, "target": ""}
        options: dict[str, list[str]] = {"source": [], "target": []}
        for word, following in zip(words[2:], [*words[3:], ""], strict=False):
            flag = word.strip("[](),:;").partition("=")[0]
            if not FLAG.match(flag):
                continue
            if flag not in flags:
                problems.append(f"{where}: `{line}`: {words[1]} has no flag {flag!r}")
            elif flag in {"-b", "--backend"}:
                backends["source"] = following.strip("[]")
            elif flag == "--to":
                backends["target"] = following.strip("[]")
            elif flag in {"-o", "--option", "-O", "--to-option"}:
                side = "source" if flag in {"-o", "--option"} else "target"
                options[side].append(following.strip("[]").partition("=")[0])
        for side in ("source", "target"):
            if backends[side]:
                problems += _check_backend(backends[side], f"{where}: `{line}`")
                problems += _check_options(backends[side], options[side], f"{where}: `{line}`")
    return problems


def check_python(text: str, where: str) -> list[str]:
    """Problems with the backends and options the page's Python code names."""
    problems = []
    for block in FENCE.finditer(text):
        if block["lang"] != "python":
            continue
        try:
            tree = ast.parse(block["code"])
        except SyntaxError:
            continue
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            name = call.func.id
            if name not in BACKEND_CALLS:
                continue
            named = BACKEND_CALLS[name]
            if isinstance(named, int):
                argument = call.args[named] if len(call.args) > named else next(
                    (k.value for k in call.keywords if k.arg == "backend"), None)
            else:
                argument = next((k.value for k in call.keywords if k.arg == named), None)
            if argument is None:
                backend = DEFAULT_BACKEND
            elif isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                backend = argument.value
            else:
                continue  # a backend instance or a variable: nothing to check by name
            line = f"{where}: line {call.lineno} of a python block, {name}(...)"
            problems += _check_backend(backend, line)
            keywords = [k.arg for k in call.keywords
                        if k.arg is not None and k.arg not in OWN_PARAMETERS[name]]
            problems += _check_options(backend, keywords, line)
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_a_page_names_only_backends_options_and_flags_that_exist(page: Path) -> None:
    text = page.read_text()
    where = str(page.relative_to(ROOT))
    assert check_commands(text, where) + check_python(text, where) == []



@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_code_fence_is_closed(page: Path) -> None:
    # A fence line with text after it ("``` A misspelt") opens no block and closes none in
    # GitHub's reading, and mkdocs renders the rest of the page as code.
    fences = [line for line in page.read_text().splitlines() if line.lstrip().startswith("```")]
    assert [line for line in fences if not re.fullmatch(r"\s*```[\w-]*", line)] == []
    assert len(fences) % 2 == 0, "a code fence is left open"

def test_the_docs_check_catches_made_up_flags_backends_and_options() -> None:
    page = """
Run `chathistory export --frobnicate` first.

```bash
chathistory copy -b postgress -o conninfo=x --to redis -O uri=redis:// \\
    --chunk 5 --fast
chathistory show s -o path=chat.sqlite3 -o pth=x
chathistory frob
```

```python
history = ChatHistory("s", backend="sqlite", path="chat.db", table="t", tabel="x")
memory = ChatHistoryMiddleware("rocket", window=8)
backend = get_backend("redis", url="redis://", key_prefx="chat:")
```
"""
    problems = check_commands(page, "page") + check_python(page, "page")
    assert [problem.rpartition(": ")[2] for problem in problems] == [
        "copy has no flag '--fast'",
        "no backend named 'postgress'",
        "backend 'redis' has no option 'uri'",
        "backend 'sqlite' has no option 'pth'",
        "no command 'frob'",
        "export has no flag '--frobnicate'",
        "backend 'sqlite' has no option 'tabel'",
        "no backend named 'rocket'",
        "backend 'redis' has no option 'key_prefx'",
    ]


def test_the_readmes_first_screen_says_what_why_and_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    for needed in ("make demo", "make test", "langchain-community", "sunset",
                   "Rockset shut down in 2024", "BaseChatMessageHistory",
                   "RunnableWithMessageHistory", "2.0", "SqliteSaver"):
        assert needed in first_screen, needed
    assert first_screen.index("make demo") < first_screen.index("## ")


def test_the_testing_page_names_every_export_of_chathistory_testing() -> None:
    table = (ROOT / "docs" / "testing.md").read_text().split("also exports")[1]
    assert set(chathistory.testing.__all__) <= set(re.findall(r"`(\w+)[`(]", table))
