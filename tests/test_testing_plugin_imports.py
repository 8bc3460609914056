"""Loading the pytest plugin is cheap: it imports nothing heavy until a fixture is used."""

import json
import subprocess
import sys

HEAVY = ("langchain_core", "langchain", "pydantic", "tenacity", "sqlite3")


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``statement``."""
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return set(json.loads(result.stdout))


def heavy(modules: set[str]) -> set[str]:
    return {module for module in modules if module.split(".")[0] in HEAVY}


def test_the_plugin_adds_no_import_of_its_own() -> None:
    package = modules_after("import chathistory")
    plugin = modules_after("import chathistory.testing.pytest_plugin")
    added = plugin - package - modules_after("import pytest")
    assert {module for module in added if module.startswith("chathistory")} == {
        "chathistory.testing", "chathistory.testing.pytest_plugin"}
    assert heavy(added) == set()


def test_the_plugin_imports_no_langchain_and_no_chathistory_module() -> None:
    modules = modules_after("import chathistory.testing.pytest_plugin")
    assert {module for module in modules if module.startswith("chathistory")} == {
        "chathistory", "chathistory.lazy", "chathistory.testing",
        "chathistory.testing.pytest_plugin"}
    assert heavy(modules) == set()

