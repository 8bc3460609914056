import pytest

from chathistory.backends.memory import MemoryBackend
from chathistory.backends.sqlite import SqliteBackend
from chathistory.testing import BackendContract


class TestMemory(BackendContract):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()


class TestSqlite(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        b = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "x.sqlite3")))
        b.create_collection()
        yield b
        b.close()
