"""The layering rules, read from the source: what ships never imports ``testing``, the
command line names no concrete backend, and no module imports another's private names."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "src" / "chathistory"
# Everything installed and imported at run time: the core but its testing package,
# every backend's package, and the example backend.
SHIPPED = sorted(
    path for path in [*CORE.rglob("*.py"), *ROOT.glob("backends/*/src/*/**/*.py"),
                      *ROOT.glob("tests/example_backend/src/*/**/*.py")]
    if "testing" not in path.relative_to(ROOT).parts)
# The command line: every module that builds commands (imports click), and transfer.py.
COMMAND_LINE = sorted({"transfer.py", *(path.name for path in CORE.glob("*.py")
                                        if "import click" in path.read_text())})


def module_name(path: Path) -> str:
    """``chathistory.backends.sqlite`` for .../src/chathistory/backends/sqlite.py."""
    after_src = len(path.parts) - path.parts[::-1].index("src")
    parts = [*path.parts[after_src:-1], path.stem]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports_of(source: str, module: str) -> list[tuple[str, str | None]]:
    """Each (module, name) the source imports; name is None for ``import module``.

    Relative imports are resolved against ``module``.
    """
    found: list[tuple[str, str | None]] = []
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[:len(package) - node.level], base]).strip(".")
            found.extend((base, alias.name) for alias in node.names)
    return found


def violations(source: str, module: str) -> list[str]:
    """Every layering rule ``source`` (the module ``module``) breaks, in words."""
    found = []
    aliases: dict[str, str] = {}
    for imported, name in imports_of(source, module):
        full = imported if name is None else f"{imported}.{name}"
        if full.startswith("chathistory.testing") or imported.startswith("chathistory.testing"):
            found.append(f"imports {full}, and testing is for tests only")
        if (name is not None and _is_private(name) and imported != module
                and imported.split(".")[0].startswith("chathistory")):
            found.append(f"imports the private name {name} of {imported}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("chathistory") and alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chathistory"):
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and _is_private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
            found.append(f"uses the private name {node.attr} of {aliases[node.value.id]}")
    return found


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(ROOT)))
def test_shipped_modules_keep_the_layering_rules(path: Path) -> None:
    assert violations(path.read_text(), module_name(path)) == []


@pytest.mark.parametrize("name", COMMAND_LINE)
def test_the_command_line_names_no_concrete_backend(name: str) -> None:
    imported = imports_of((CORE / name).read_text(), f"chathistory.{name[:-3]}")
    assert [module for module, _ in imported
            if module.startswith("chathistory.backends")
            or module.startswith("chathistory_")] == []


def test_every_command_module_is_checked() -> None:
    assert {"cli.py", "session_commands.py", "catalog_commands.py"} <= set(COMMAND_LINE)


def test_the_fake_chat_model_keeps_its_testing_name() -> None:
    from chathistory.fake_chat_model import ToolCallingFakeModel
    from chathistory.testing.chat_models import ToolCallingFakeModel as Kept

    assert Kept is ToolCallingFakeModel


@pytest.mark.parametrize(("source", "broken"), [
    ("from chathistory.testing.chat_models import ToolCallingFakeModel", "testing"),
    ("import chathistory.testing", "testing"),
    ("from chathistory import testing", "testing"),
    ("from chathistory.history import _check", "private name _check"),
    ("from ..history import _check", "private name _check"),
    ("import chathistory.history as history\nhistory._check('s')", "private name _check"),
    ("from chathistory import history\nhistory._check('s')", "private name _check"),
])
def test_the_checks_catch_what_they_forbid(source: str, broken: str) -> None:
    assert any(broken in found for found in violations(source, "chathistory.backends.x"))


def test_a_module_may_use_its_own_private_names() -> None:
    assert violations("from chathistory.history import _check\n_check('s')",
                      "chathistory.history") == []
    assert violations("from chathistory.history import __all__", "chathistory.cli") == []


BACKEND_SOURCES = sorted([*ROOT.glob("backends/*/src/*/**/*.py"),
                          *ROOT.glob("tests/example_backend/src/*/**/*.py")])


def unlisted_names(source: str, module: str) -> list[str]:
    """Each ``from chathistory... import name`` in ``source`` whose module does not list the
    name in its ``__all__``: a backend uses the core's public names only."""
    found = []
    for imported, name in imports_of(source, module):
        if name is None or imported.split(".")[0] != "chathistory":
            continue
        where = importlib.import_module(imported)
        is_module = hasattr(where, "__path__") and importlib.util.find_spec(
            f"{imported}.{name}") is not None
        if name not in getattr(where, "__all__", ()) and not is_module:
            found.append(f"{imported}.{name}")
    return found


@pytest.mark.parametrize("path", BACKEND_SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_backends_import_only_the_cores_public_names(path: Path) -> None:
    assert unlisted_names(path.read_text(), module_name(path)) == []


def test_the_public_names_check_catches_an_unlisted_name() -> None:
    assert unlisted_names("from chathistory.history import check_session_id",
                          "chathistory_x.backend") == ["chathistory.history.check_session_id"]
    assert unlisted_names("from chathistory import records\nfrom chathistory.records import "
                          "decode_records", "chathistory_x.backend") == []
