import asyncio
import threading
import time

import pytest
from langchain_core.messages import HumanMessage

from chathistory import BackendUnavailableError, ChatHistory, RecordError, history_factory
from chathistory.backends.memory import MemoryBackend, forget_shared_stores
from chathistory.testing import BackendContract, fake_backends


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend()


def test_fail_next_fails_exactly_that_many_calls_and_changes_nothing() -> None:
    backend = MemoryBackend()
    history = ChatHistory("s", backend=backend)
    history.add_user_message("before")
    backend.fail_next(2)
    for _ in range(2):
        with pytest.raises(BackendUnavailableError, match="injected failure"):
            history.add_user_message("lost")
    history.add_user_message("after")
    assert [m.content for m in history.messages] == ["before", "after"]


def test_latency_is_added_to_sync_and_async_calls() -> None:
    backend = MemoryBackend(MemoryBackend.Config(latency=0.05))
    started = time.perf_counter()
    backend.fetch("s")
    assert time.perf_counter() - started >= 0.05
    started = time.perf_counter()
    asyncio.run(backend.afetch("s"))
    assert time.perf_counter() - started >= 0.05


def test_a_value_json_cannot_hold_fails_at_add_time_not_later() -> None:
    history = ChatHistory("s", backend=MemoryBackend())
    with pytest.raises(RecordError):
        history.add_messages([HumanMessage("ok"),
                              HumanMessage("bad", additional_kwargs={"at": object()})])
    assert history.messages == []


def test_sessions_lists_what_tests_may_want_to_assert() -> None:
    backend = MemoryBackend()
    backend.append("a", [{"type": "human", "data": {"content": "x"}}])
    backend.append("b", [])
    assert backend.sessions() == ["a"]


def test_calls_are_counted_under_concurrency() -> None:
    backend = MemoryBackend()
    threads = [threading.Thread(target=backend.fetch, args=("s",)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.calls["fetch"] == 16


class TestMemoryBackendRefusingNul(BackendContract):
    """The fake mimicking a layout that cannot hold NUL passes the suite's refusal branch."""

    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend(MemoryBackend.Config(refuse_nul=True))

    @pytest.fixture
    def holds_nul(self) -> bool:
        return False


@pytest.mark.parametrize(("message", "where"), [
    (HumanMessage("a\x00b"), "data.content"),
    (HumanMessage("ok", name="n\x00"), "data.name"),
    (HumanMessage("ok", additional_kwargs={"tags": ["x", "\x00"]}),
     r"data.additional_kwargs.tags\[1\]"),
    (HumanMessage("ok", additional_kwargs={"k\x00": 1}), "a key of data.additional_kwargs"),
])
def test_refuse_nul_says_where_and_writes_nothing(message: HumanMessage, where: str) -> None:
    history = ChatHistory("s", backend="memory", refuse_nul=True)
    history.clear()
    with pytest.raises(RecordError, match=rf"refuse_nul=True\) cannot store {where}: it holds "
                                          r"a NUL character \(U\+0000\)"):
        history.add_messages([HumanMessage("fine"), message])
    assert history.messages == []


def test_nul_is_stored_by_default() -> None:
    history = ChatHistory("s", backend=MemoryBackend())
    history.add_messages([HumanMessage("a\x00b", name="n\x00")])
    assert history.messages == [HumanMessage("a\x00b", name="n\x00")]


def test_by_name_equal_options_share_one_store() -> None:
    first = ChatHistory("shared-by-name", backend="memory")
    first.add_user_message("hi")
    second = ChatHistory("shared-by-name", backend="memory")
    assert [m.text for m in second.messages] == ["hi"]
    factory = history_factory("memory")
    assert [m.text for m in factory("shared-by-name").messages] == ["hi"]
    # Other options, another store; a MemoryBackend built directly has its own.
    assert ChatHistory("shared-by-name", backend="memory", latency=0.001).messages == []
    assert ChatHistory("shared-by-name", backend=MemoryBackend()).messages == []
    first.clear()
    assert second.messages == []


def test_the_fake_swap_gets_fresh_stores_even_for_memory() -> None:
    ChatHistory("swap-fresh", backend="memory").add_user_message("outside")
    with fake_backends("memory") as fakes:
        assert ChatHistory("swap-fresh", backend="memory").messages == []
        ChatHistory("swap-fresh", backend="memory").add_user_message("inside")
        assert fakes["memory"].sessions() == ["swap-fresh"]
    assert [m.text for m in ChatHistory("swap-fresh", backend="memory").messages] == ["outside"]


def test_forget_shared_stores_starts_new_backends_empty() -> None:
    ChatHistory("forgotten", backend="memory").add_user_message("x")
    forget_shared_stores()
    assert ChatHistory("forgotten", backend="memory").messages == []


def test_the_catalogs_owner_index_follows_every_change() -> None:
    from chathistory import erase, list_conversations
    from chathistory.catalog import SessionSummary
    from chathistory.testing import numbered_records

    backend = MemoryBackend()
    for session in ("a", "b", "c"):
        backend.append(session, numbered_records(1))
        backend.update_session(session, owner="ada")

    def owned(owner: str) -> set[str]:
        return {summary.session_id for summary in
                list_conversations(backend, owner=owner, limit=100).summaries}

    backend.update_session("a", owner="bob")
    backend.update_session("b", owner=None)
    moved = backend.session_summaries(["c"])["c"]
    backend.restore_summaries([SessionSummary("c", "carol", None, {}, moved.created_at,
                                              moved.updated_at, 0)])
    assert (owned("ada"), owned("bob"), owned("carol")) == (set(), {"a"}, {"c"})
    backend.clear("a")
    assert owned("bob") == set() and backend._catalog.owned == {"carol": {"c"}}
    erase(backend, owner="carol")
    assert backend._catalog.owned == {}
