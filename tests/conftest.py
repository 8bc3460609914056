from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chathistory.backends.sqlite import SqliteBackend


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes a minute or so (builds wheels, installs into a fresh venv); "
                   "part of every run, deselect with -m 'not slow'")


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "chat.sqlite3")


@pytest.fixture
def sqlite_backend(sqlite_path: str) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(SqliteBackend.Config(path=sqlite_path))
    backend.create_collection()
    yield backend
    backend.close()
