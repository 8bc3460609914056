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
    "loses_unicode": """
        def fetch(self, session_id, *, limit=None):
            import json
            records = super().fetch(session_id, limit=limit)
            text = [json.dumps(r, ensure_ascii=False) for r in records]
            return [json.loads(t.encode("ascii", "replace").decode()) for t in text]
    """,
}


@pytest.mark.parametrize("flaw", sorted(BROKEN))
def test_a_broken_backend_fails_the_contract(pytester: pytest.Pytester, flaw: str) -> None:
    body = "\n".join("    " + line[8:] for line in BROKEN[flaw].strip("\n").splitlines())
    pytester.makepyfile(f"""
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
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()


def test_a_correct_backend_passes_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
import pytest
from chathistory.backends.memory import MemoryBackend
from chathistory.testing import BackendContract

class TestCorrect(BackendContract):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()
""")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] > 20, result.stdout.str()
