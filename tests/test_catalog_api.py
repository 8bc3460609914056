"""The catalog from an application: ChatHistory's methods and the module-level functions."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

import chathistory
from chathistory import (
    CapabilityMissingError,
    ChatHistory,
    ErasureReceipt,
    erase,
    list_conversations,
)
from chathistory.backends.memory import MemoryBackend
from chathistory.backends.sqlite import SqliteBackend
from chathistory.testing.blocking import run_without_blocking
from chathistory.testing.samples import numbered_records
from chathistory.transfer import copy_sessions, export_sessions


class FourMethodsOnly(MemoryBackend):
    """A backend of the four methods: no catalog."""

    list_summaries = session_summaries = update_session = erase_sessions = None  # type: ignore[assignment]
    restore_summaries = None  # type: ignore[assignment]


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    store = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "chat.sqlite3")))
    yield store
    store.close()


def test_a_history_sets_its_owner_title_and_metadata(backend: Any) -> None:
    history = ChatHistory("s1", backend=backend)
    assert history.summary() is None
    history.add_messages([HumanMessage("What is a monad?"), AIMessage("A monoid...")])
    history.set_owner("ada", only_if_unset=True)
    history.set_owner("bob", only_if_unset=True)
    history.set_title("Monads", only_if_unset=True)
    history.update_metadata({"model": "m1", "tokens": 12})
    summary = history.update_metadata({"tokens": 30})
    assert (summary.owner, summary.title, summary.messages) == ("ada", "Monads", 2)
    assert summary.metadata == {"model": "m1", "tokens": 30}
    assert history.update_metadata({"only": 1}, replace=True).metadata == {"only": 1}
    assert history.summary() == history.update_session()
    assert history.set_title(None).title is None


def test_the_async_methods_agree(backend: Any) -> None:
    history = ChatHistory("s2", backend=backend)

    async def describe() -> Any:
        await history.aadd_messages([HumanMessage("hi")])
        await history.aset_owner("ada")
        await history.aset_title("Greeting", only_if_unset=True)
        await history.aset_title("Other", only_if_unset=True)
        await history.aupdate_metadata({"k": "v"})
        return await history.asummary()

    summary = run_without_blocking(describe())
    assert (summary.owner, summary.title, summary.metadata, summary.messages) == (
        "ada", "Greeting", {"k": "v"}, 1)
    assert history.summary() == summary


def test_listing_and_erasure_from_the_package(backend: Any) -> None:
    for number in range(5):
        history = ChatHistory(f"c{number}", backend=backend)
        history.add_messages([HumanMessage(f"question {number}")])
        history.set_owner("ada" if number % 2 == 0 else "bob")
    page = list_conversations(backend, owner="ada", limit=2)
    assert [summary.session_id for summary in page.summaries] == ["c4", "c2"]
    rest = list_conversations(backend, owner="ada", limit=2, cursor=page.cursor)
    assert [summary.session_id for summary in rest.summaries] == ["c0"] and rest.cursor is None
    assert asyncio.run(chathistory.alist_conversations(backend, owner="bob")).summaries[0] \
        .session_id == "c3"
    assert erase(backend, owner="ada", dry_run=True) == ErasureReceipt(3, 3, dry_run=True)
    assert erase(backend, owner="ada") == ErasureReceipt(3, 3)
    assert asyncio.run(chathistory.aerase(backend, session_ids=["c1", "nobody"])) == \
        ErasureReceipt(1, 1)
    assert [summary.session_id for summary in list_conversations(backend).summaries] == ["c3"]


@pytest.mark.parametrize("arguments", [{}, {"owner": "ada", "session_ids": ["s"]},
                                       {"session_ids": "s"}, {"owner": ""},
                                       {"owner": "ada", "chunk": 0}])
def test_erase_takes_an_owner_or_ids(arguments: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        erase(MemoryBackend(), **arguments)


def test_a_backend_without_a_catalog_says_which_capability_is_missing() -> None:
    backend = FourMethodsOnly()
    history = ChatHistory("s", backend=backend)
    history.add_messages([HumanMessage("kept")])
    for call in (lambda: history.set_owner("ada"), history.summary,
                 lambda: list_conversations(backend), lambda: erase(backend, owner="ada")):
        with pytest.raises(CapabilityMissingError, match="lacks the KeepsCatalog capability"):
            call()
    with pytest.raises(CapabilityMissingError, match="KeepsCatalog"):
        asyncio.run(history.aset_title("t"))
    assert len(history.messages) == 1


def test_an_erase_that_leaves_catalog_entries_is_an_error_not_an_endless_loop() -> None:
    class Leaves(MemoryBackend):
        def erase_sessions(self, session_ids: Any, *, dry_run: bool = False) -> Any:
            receipt = super().erase_sessions(session_ids, dry_run=True)
            receipt.dry_run = dry_run
            return receipt

    backend = Leaves()
    backend.append("s", numbered_records(1))
    backend.update_session("s", owner="ada")
    with pytest.raises(chathistory.ChatHistoryError, match="still listed after it was erased"):
        erase(backend, owner="ada")


LONE = "a\udcffb"  # what bytes decoded with errors="surrogateescape" hold: no Unicode text

REFUSED_CALLS: dict[str, Any] = {
    "ChatHistory": lambda backend: ChatHistory(LONE, backend=backend),
    "set_owner": lambda backend: ChatHistory("s", backend=backend).set_owner(LONE),
    "set_title": lambda backend: ChatHistory("s", backend=backend).set_title(LONE),
    "metadata value": lambda backend: ChatHistory("s", backend=backend).update_metadata(
        {"topic": LONE}),
    "metadata key": lambda backend: ChatHistory("s", backend=backend).update_metadata(
        {LONE: 1}),
    "update_session": lambda backend: ChatHistory("s", backend=backend).update_session(
        owner="ada", title=LONE),
    "aset_owner": lambda backend: asyncio.run(
        ChatHistory("s", backend=backend).aset_owner(LONE)),
    "aupdate_metadata": lambda backend: asyncio.run(
        ChatHistory("s", backend=backend).aupdate_metadata({"topic": LONE})),
    "list by owner": lambda backend: list_conversations(backend, owner=LONE),
    "list where key": lambda backend: list_conversations(backend, where={LONE: 1}),
    "list where value": lambda backend: list_conversations(backend, where={"topic": LONE}),
    "erase owner": lambda backend: erase(backend, owner=LONE),
    "erase ids": lambda backend: erase(backend, session_ids=["s", LONE]),
    "copy ids": lambda backend: copy_sessions(MemoryBackend(), backend, ["s", LONE]),
    "export ids": lambda backend: export_sessions(backend, io.StringIO(), ["s", LONE]),
}


@pytest.mark.parametrize("call", REFUSED_CALLS.values(), ids=REFUSED_CALLS)
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_lone_surrogate_is_refused_up_front_and_nothing_is_created(
        tmp_path: Path, kind: str, call: Any) -> None:
    # A SQL store's codec refused it midway (after creating the database); Redis kept it,
    # though no export could carry it to another store.
    path = tmp_path / "chat.sqlite3"
    backend: Any = (MemoryBackend() if kind == "memory"
                    else SqliteBackend(SqliteBackend.Config(path=str(path))))
    with pytest.raises(ValueError, match=r"holds a lone surrogate \('\\udcff' at position 1\)"
                       r".*pass valid text") as caught:
        call(backend)
    assert not isinstance(caught.value, UnicodeError)
    if kind == "memory":
        assert sum(backend.calls.values()) == 0, backend.calls
    else:
        backend.close()
        assert not path.exists(), "a refused call created the database"


def test_a_named_backend_is_not_built_for_a_lone_surrogate(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    with pytest.raises(ValueError, match="session_id holds a lone surrogate"):
        ChatHistory(LONE, backend="sqlite", path=str(path)).add_messages([HumanMessage("hi")])
    assert not path.exists()
