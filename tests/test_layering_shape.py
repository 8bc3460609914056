"""The rules "Writing a backend" states, read from every shipped backend package and the
example backend: one shape, a cheap plugin module, a constructor that takes the config,
and a test extra with the contract suite's needs."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package's directory (src/<package>) and its distribution's root.
PACKAGES = sorted(path.parent for path in [*ROOT.glob("backends/*/src/*/plugin.py"),
                                           *ROOT.glob("tests/example_backend/src/*/plugin.py")])
SHAPE = {"__init__.py", "plugin.py", "config.py", "client.py", "errors.py", "backend.py"}


def distribution_of(package: Path) -> Path:
    return package.parents[1]


def parsed(package: Path, module: str) -> ast.Module:
    return ast.parse((package / module).read_text())


def lazy_names(package: Path) -> dict[str, str]:
    """The names ``__init__.py`` hands to ``lazy_exports``, and the module of each."""
    for node in ast.walk(parsed(package, "__init__.py")):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "lazy_exports"):
            return ast.literal_eval(node.args[1])  # type: ignore[no-any-return]
    return {}


def ids(package: Path) -> str:
    return str(package.relative_to(ROOT))


def test_every_shipped_backend_is_found() -> None:
    assert [package.name for package in PACKAGES] == [
        "chathistory_postgres", "chathistory_redis", "chathistory_rockset",
        "chathistory_sqlalchemy", "chathistory_example"]


@pytest.mark.parametrize("package", PACKAGES, ids=ids)
def test_the_package_has_the_shape(package: Path) -> None:
    assert {path.name for path in package.glob("*.py")} >= SHAPE


@pytest.mark.parametrize("package", PACKAGES, ids=ids)
def test_init_exports_the_backend_and_its_config_lazily(package: Path) -> None:
    names = lazy_names(package)
    assert sorted(names.values()) == ["backend", "config"]
    backend, config = sorted(names, key=names.__getitem__)
    assert backend.endswith("Backend") and config == backend.removesuffix("Backend") + "Config"


@pytest.mark.parametrize("package", PACKAGES, ids=ids)
def test_the_plugin_module_is_one_hook_that_imports_the_backend_in_its_body(
        package: Path) -> None:
    module = parsed(package, "plugin.py")
    functions = [node for node in module.body if isinstance(node, ast.FunctionDef)]
    assert [function.name for function in functions] == ["chathistory_backend"]
    assert [ast.unparse(decorator) for decorator in functions[0].decorator_list] == ["hookimpl"]
    at_import = [node for node in module.body if isinstance(node, ast.ImportFrom)]
    assert {node.module for node in at_import} <= {"__future__", "typing", "chathistory"}
    assert any(isinstance(node, ast.ImportFrom) and node.module == f"{package.name}.backend"
               for node in ast.walk(functions[0]))


@pytest.mark.parametrize("package", PACKAGES, ids=ids)
def test_the_constructor_takes_the_config(package: Path) -> None:
    backend = next(name for name, module in lazy_names(package).items() if module == "backend")
    (cls,) = [node for node in parsed(package, "backend.py").body
              if isinstance(node, ast.ClassDef) and node.name == backend]
    (init,) = [node for node in cls.body
               if isinstance(node, ast.FunctionDef) and node.name == "__init__"]
    assert [argument.arg for argument in init.args.args] == ["self", "config"]
    assert init.args.defaults == [] and init.args.kwonlyargs == []


@pytest.mark.parametrize("package", PACKAGES, ids=ids)
def test_the_config_is_a_backend_config(package: Path) -> None:
    config = next(name for name, module in lazy_names(package).items() if module == "config")
    (cls,) = [node for node in parsed(package, "config.py").body
              if isinstance(node, ast.ClassDef) and node.name == config]
    assert [ast.unparse(base) for base in cls.bases] == ["BackendConfig"]


# The guide: "the backend's own test extra depends on chathistory[testing]".
@pytest.mark.parametrize("package", PACKAGES, ids=ids)
def test_the_test_extra_brings_the_contract_suites_needs(package: Path) -> None:
    project = tomllib.loads((distribution_of(package) / "pyproject.toml").read_text())["project"]
    assert "chathistory[testing]" in project["optional-dependencies"]["test"]
