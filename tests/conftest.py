from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chathistory.backends.sqlite import SqliteBackend, default_path

_USERS_DATA = pytest.StashKey[tuple[Path, tuple[object, ...]]]()


def _state(path: Path) -> tuple[object, ...]:
    """What a test could change about a file or directory: each entry's size and mtime."""
    if not path.exists():
        return ()
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    return tuple((str(entry), entry.stat().st_size, entry.stat().st_mtime_ns)
                 for entry in entries)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes a minute or so (builds wheels, installs into a fresh venv); "
                   "part of every run, deselect with -m 'not slow'")
    # The user's own chat database stays theirs: whatever a test (or a command a
    # test runs, which inherits this environment) stores by default goes to a
    # data home of the run's own. CHATHISTORY_SQLITE_PATH would point at theirs.
    users_data = Path(default_path()).parent
    config.stash[_USERS_DATA] = (users_data, _state(users_data))
    os.environ.pop("CHATHISTORY_SQLITE_PATH", None)
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="chathistory-tests-data-")


def pytest_sessionfinish(session: pytest.Session) -> None:
    users_data, before = session.config.stash[_USERS_DATA]
    if _state(users_data) != before:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"FAILED: {users_data}, the user's own chathistory data, changed during "
                    "the test run (a test wrote there, unless another program did)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(os.environ["XDG_DATA_HOME"], ignore_errors=True)


@pytest.fixture
def users_data_dir(pytestconfig: pytest.Config) -> Path:
    """Where chathistory keeps the user's data by default, outside this run."""
    return pytestconfig.stash[_USERS_DATA][0]


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "chat.sqlite3")


@pytest.fixture
def sqlite_backend(sqlite_path: str) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(SqliteBackend.Config(path=sqlite_path))
    backend.create_collection()
    yield backend
    backend.close()
