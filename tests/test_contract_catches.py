"""The contract suite must fail broken backends, or it proves nothing."""

import pytest

pytest_plugins = ["pytester"]

BROKEN = {
    "reverses_order": """
        def fetch(self, session_id, *, limit=None):
            return list(reversed(super().fetch(session_id, limit=limit)))
    """,
    "drops_a_record": """
        def append(self, session_id, records):
            super().append(session_id, list(records)[:-1] if len(records) > 2 else records)
    """,
    "clears_every_session": """
        def clear(self, session_id):
            for session in self.sessions():
                super().clear(session)
    """,
    "ignores_limit": """
        def fetch(self, session_id, *, limit=None):
            return super().fetch(session_id)
    """,
    "limit_gives_the_oldest": """
        def fetch(self, session_id, *, limit=None):
            records = super().fetch(session_id)
            return records if limit is None else records[:limit]
    """,
    "async_twin_differs": """
        async def afetch(self, session_id, *, limit=None):
            return []
    """,
    "half_writes_a_bad_batch": """
        def append(self, session_id, records):
            for record in records:
                super().append(session_id, [record])
    """,
    "blocks_the_event_loop": """
        async def aappend(self, session_id, records):
            import time
            time.sleep(0.001)
            await super().aappend(session_id, records)
    """,
    "loses_nul_characters": """
        def fetch(self, session_id, *, limit=None):
            import json
            records = super().fetch(session_id, limit=limit)
            return json.loads(json.dumps(records).replace(chr(92) + "u0000", ""))
    """,
    "loses_unicode": """
        def fetch(self, session_id, *, limit=None):
            import json
            records = super().fetch(session_id, limit=limit)
            text = [json.dumps(r, ensure_ascii=False) for r in records]
            return [json.loads(t.encode("ascii", "replace").decode()) for t in text]
    """,
}


def run_suite(pytester: pytest.Pytester, source: str) -> dict[str, int]:
    pytester.makepyfile(source)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    outcomes.setdefault("failed", 0)
    outcomes.setdefault("passed", 0)
    return outcomes


@pytest.mark.parametrize("flaw", sorted(BROKEN))
def test_a_broken_backend_fails_the_contract(pytester: pytest.Pytester, flaw: str) -> None:
    body = "\n".join("    " + line[8:] for line in BROKEN[flaw].strip("\n").splitlines())
    outcomes = run_suite(pytester, f"""
import pytest
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract

class Broken(MemoryBackend):
{body}

class TestBroken(BackendContract):
    @pytest.fixture
    def backend(self):
        return Broken()
""")
    assert outcomes["failed"] >= 1, outcomes


def test_a_blocking_async_twin_fails_with_blockbusters_error(pytester: pytest.Pytester
                                                             ) -> None:
    pytester.makepyfile("""
import time

import pytest
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract

class SleepsOnTheLoop(MemoryBackend):
    async def afetch(self, session_id, *, limit=None):
        time.sleep(0.001)
        return await super().afetch(session_id, limit=limit)

class TestSleepsOnTheLoop(BackendContract):
    @pytest.fixture
    def backend(self):
        return SleepsOnTheLoop()
""")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 3, outcomes
    result.stdout.fnmatch_lines(["*BlockingError: Blocking call to*sleep*"])


def test_blocking_sync_methods_pass_in_basebackends_worker_threads(pytester: pytest.Pytester
                                                                   ) -> None:
    """BaseBackend's default twins run the sync methods with asyncio.to_thread: not the loop."""
    outcomes = run_suite(pytester, """
import time

import pytest
from chathistory import BaseBackend
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract


class SlowSyncOnly(BaseBackend):
    def __init__(self):
        super().__init__(BaseBackend.Config())
        self.store = MemoryBackend()

    def create_collection(self):
        time.sleep(0.001)

    def append(self, session_id, records):
        time.sleep(0.001)
        self.store.append(session_id, records)

    def fetch(self, session_id, *, limit=None):
        time.sleep(0.001)
        return self.store.fetch(session_id, limit=limit)

    def clear(self, session_id):
        time.sleep(0.001)
        self.store.clear(session_id)


class TestSlowSyncOnly(BackendContract):
    @pytest.fixture
    def backend(self):
        return SlowSyncOnly()
""")
    assert outcomes["failed"] == 0 and outcomes["passed"] > 20, outcomes


UUID_ONLY = """
import re
import uuid

import pytest
from chathistory import BaseBackend
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class UuidOnly(BaseBackend):
    \"\"\"Stands for a layout that takes UUID session ids only.\"\"\"

    def __init__(self):
        super().__init__(BaseBackend.Config())
        self.store = MemoryBackend()

    def check(self, session_id):
        if not UUID.fullmatch(session_id):
            raise ValueError(f"not a UUID: {session_id!r}")
        return session_id

    def create_collection(self):
        pass

    def append(self, session_id, records):
        self.store.append(self.check(session_id), records)

    def fetch(self, session_id, *, limit=None):
        return self.store.fetch(self.check(session_id), limit=limit)

    def clear(self, session_id):
        self.store.clear(self.check(session_id))


class TestUuidOnly(BackendContract):
    @pytest.fixture
    def backend(self):
        return UuidOnly()
"""

OVERRIDE = """
    @pytest.fixture
    def make_session_id(self):
        return lambda name: str(uuid.uuid5(uuid.NAMESPACE_URL, name))
"""


def test_make_session_id_reaches_every_test(pytester: pytest.Pytester) -> None:
    """The backend refuses every id that is not a UUID: with the override the whole suite
    passes, so no test used an id of its own; without it, every test that stores fails."""
    with_override = run_suite(pytester, UUID_ONLY + OVERRIDE)
    assert with_override["failed"] == 0 and with_override["passed"] > 20, with_override
    without = run_suite(pytester, UUID_ONLY)
    assert without["passed"] == 1, without  # test_satisfies_protocol stores nothing
    assert without["failed"] == with_override["passed"] - 1, without


def test_a_broken_backend_fails_with_make_session_id_overridden(pytester: pytest.Pytester
                                                                ) -> None:
    broken = UUID_ONLY.replace(
        "return self.store.fetch(self.check(session_id), limit=limit)",
        "return list(reversed(self.store.fetch(self.check(session_id), limit=limit)))")
    assert run_suite(pytester, broken + OVERRIDE)["failed"] >= 1


def test_the_helpers_backend_tests_need_are_public() -> None:
    import chathistory.testing as testing

    for name in ("BackendContract", "MakeSessionId", "numbered_records", "sample_messages",
                 "run_without_blocking",
                 "HOSTILE_SESSION_IDS", "fake_backends", "FakeBackends"):
        assert name in testing.__all__ and getattr(testing, name) is not None


READS_LEAVE_NO_TRACE = """
import pytest
from chathistory import BaseBackend
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract


class LocksOnRead(BaseBackend):
    \"\"\"Stands for a backend whose reads take a lock file next to the store.\"\"\"

    def __init__(self, directory):
        super().__init__(BaseBackend.Config())
        self.directory = directory
        self.store = MemoryBackend()

    def create_collection(self):
        pass

    def append(self, session_id, records):
        self.store.append(session_id, records)

    def fetch(self, session_id, *, limit=None):
        (self.directory / "reading.lock").touch()
        return self.store.fetch(session_id, limit=limit)

    def clear(self, session_id):
        self.store.clear(session_id)


class TestLocksOnRead(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return LocksOnRead(tmp_path)
"""


def run_reads_tests(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-k", "reads_")


def test_a_read_that_creates_a_file_fails_the_contract(pytester: pytest.Pytester) -> None:
    result = run_reads_tests(pytester, READS_LEAVE_NO_TRACE)
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*fetch created something in the store*"])
    fixed = run_reads_tests(pytester, READS_LEAVE_NO_TRACE.replace(
        '(self.directory / "reading.lock").touch()', "pass"))
    assert fixed.parseoutcomes().get("failed", 0) == 0, fixed.stdout.str()


CREATES_ITS_DIRECTORY_ON_READ = """
import pytest
from chathistory import get_backend
from chathistory.testing import BackendContract
from chathistory_example.backend import JsonLinesBackend


class CreatesOnRead(JsonLinesBackend):
    def fetch(self, session_id, *, limit=None):
        self.files.create()
        return super().fetch(session_id, limit=limit)


class TestCreatesOnRead(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        backend = CreatesOnRead(CreatesOnRead.Config(directory=tmp_path / "histories"))
        backend.create_collection()
        return backend

    @pytest.fixture
    def uncreated_backend(self, tmp_path):
        return CreatesOnRead(CreatesOnRead.Config(directory=tmp_path / "never-created"))
"""


def test_a_read_that_creates_a_missing_store_fails_the_contract(pytester: pytest.Pytester
                                                                ) -> None:
    result = run_reads_tests(pytester, CREATES_ITS_DIRECTORY_ON_READ)
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_reads_of_a_store_that_does_not_exist_create_nothing*",
                                 "*fetch of a store that does not exist created something*"])


INDEXES_ON_READ = """
import pytest
from chathistory import BaseBackend
from chathistory.backends.memory import MemoryBackend
from chathistory.capabilities import SessionInfo
from chathistory.testing import BackendContract


class IndexesOnRead(BaseBackend):
    \"\"\"Stands for a store whose reads add the session to its index of sessions.\"\"\"

    def __init__(self):
        super().__init__(BaseBackend.Config())
        self.store = MemoryBackend()
        self.index = set()

    def create_collection(self):
        pass

    def append(self, session_id, records):
        self.index.add(session_id)
        self.store.append(session_id, records)

    def fetch(self, session_id, *, limit=None):
        self.index.add(session_id)
        return self.store.fetch(session_id, limit=limit)

    def clear(self, session_id):
        self.index.discard(session_id)
        self.store.clear(session_id)

    def list_sessions(self, *, after=None, limit=100):
        ids = sorted(i for i in self.index if after is None or i > after)[:limit]
        return [SessionInfo(i, len(self.store.fetch(i))) for i in ids]

    async def alist_sessions(self, *, after=None, limit=100):
        return self.list_sessions(after=after, limit=limit)


class TestIndexesOnRead(BackendContract):
    @pytest.fixture
    def backend(self):
        return IndexesOnRead()
"""


def test_a_read_that_makes_a_session_appear_fails_the_contract(pytester: pytest.Pytester
                                                               ) -> None:
    result = run_reads_tests(pytester, INDEXES_ON_READ)
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*a read of a session that was never written made it*"])
    fixed = run_reads_tests(pytester, INDEXES_ON_READ.replace(
        "        self.index.add(session_id)\n        return self.store.fetch",
        "        return self.store.fetch"))
    assert fixed.parseoutcomes().get("failed", 0) == 0, fixed.stdout.str()
