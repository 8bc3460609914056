"""The example backend passes the whole contract suite, found by its entry-point name."""

from pathlib import Path

import pytest

from chathistory import Backend, get_backend
from chathistory.testing import BackendContract


class TestJsonLinesBackend(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        backend = get_backend("jsonl", directory=tmp_path / "histories")
        backend.create_collection()
        return backend

    @pytest.fixture
    def uncreated_backend(self, tmp_path: Path) -> Backend:
        return get_backend("jsonl", directory=tmp_path / "never-created")
