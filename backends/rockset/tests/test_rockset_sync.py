"""``sync=True``: read-after-write through the commit-offset fence, under eventual consistency."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chathistory_rockset.backend import RocksetBackend
from chathistory_rockset.errors import RocksetSyncTimeoutError
from langchain_core.messages import AIMessage, HumanMessage
from rockset_emulator import RocksetEmulator

from chathistory import BackendUnavailableError, ChatHistory, ChatHistoryError
from chathistory.testing import numbered_records, wait_until

API_KEY = "test-key"  # the shared emulator's (conftest.py)
DELAY = 0.3
_names = itertools.count()


@pytest.fixture
def pair(emu: RocksetEmulator) -> Iterator[Callable[..., tuple[RocksetBackend, RocksetBackend]]]:
    """A writer with the given options and a reader with its own client, on a fresh collection.

    The collection and a first batch of session "s" are made before writes are delayed.
    """
    built: list[RocksetBackend] = []

    def make(**writer_options: Any) -> tuple[RocksetBackend, RocksetBackend]:
        collection = f"sync_{next(_names)}"
        writer = RocksetBackend.from_options(api_key=API_KEY, host=emu.url,
                                             collection=collection, **writer_options)
        reader = RocksetBackend.from_options(client=emu.client(), collection=collection)
        built.extend([writer, reader])
        writer.create_collection()
        writer.append("s", numbered_records(1, prefix="old"))
        emu.set_visibility_delay(DELAY)
        emu.reset_request_count()
        return writer, reader

    yield make
    for backend in built:
        backend.close()


def contents(records: list[dict[str, Any]]) -> list[str]:
    return [record["data"]["content"] for record in records]


def test_without_sync_a_second_client_does_not_see_the_write_yet(
        pair: Callable[..., Any]) -> None:
    writer, reader = pair(sync=False)
    writer.append("s", numbered_records(2))
    assert contents(reader.fetch("s")) == ["old0"]  # the emulator's delay is real
    wait_until(lambda: contents(reader.fetch("s")) == ["old0", "m0", "m1"], "the reader sees it")


def test_sync_makes_the_write_readable_by_another_client_at_once(
        pair: Callable[..., Any], emu: RocksetEmulator) -> None:
    writer, reader = pair(sync=True)
    history = ChatHistory("s", backend=writer)
    started = time.monotonic()
    history.add_messages([HumanMessage("q"), AIMessage("a")])
    elapsed = time.monotonic() - started
    assert contents(reader.fetch("s")) == ["old0", "q", "a"]
    # The wait was the fence's: the writer polled the commit offsets, never the data.
    writes = emu.requests[:-1]
    assert writes[0] == ("GET", "/v1/orgs/self/ws/commons/collections/" + writer.config.collection)
    assert writes[1][0] == "PATCH"
    fences = writes[2:]
    assert fences and all(path.endswith("/offsets/commit") for _, path in fences)
    assert not any(path == "/v1/orgs/self/queries" for _, path in writes)
    assert elapsed >= DELAY


def test_sync_works_for_a_new_session_and_for_clear(pair: Callable[..., Any]) -> None:
    writer, reader = pair(sync=True)
    writer.append("fresh", numbered_records(2))
    assert contents(reader.fetch("fresh")) == ["m0", "m1"]
    writer.clear("s")
    assert reader.fetch("s") == []


def test_sync_async_twins(pair: Callable[..., Any]) -> None:
    import asyncio

    writer, reader = pair(sync=True)

    async def scenario() -> None:
        await writer.aappend("s", numbered_records(1))
        assert contents(reader.fetch("s")) == ["old0", "m0"]
        await writer.aclear("s")
        assert reader.fetch("s") == []

    asyncio.run(scenario())


def test_sync_timeout_says_the_write_is_stored(
        pair: Callable[..., Any]) -> None:
    writer, reader = pair(sync=True, sync_timeout=0.05)
    with pytest.raises(RocksetSyncTimeoutError) as raised:
        writer.append("s", numbered_records(1))
    assert isinstance(raised.value, ChatHistoryError)
    assert isinstance(raised.value, TimeoutError)
    assert "was stored" in str(raised.value)
    assert "do not send it again" in str(raised.value)
    wait_until(lambda: contents(reader.fetch("s")) == ["old0", "m0"], "the reader sees it")


def test_a_new_session_on_a_slow_server_without_sync(
        pair: Callable[..., Any]) -> None:
    """The check after creating a document gives up quietly when sync is off."""
    writer, reader = pair(sync=False, sync_timeout=0.05)
    writer.append("new", numbered_records(2))
    wait_until(lambda: contents(reader.fetch("new")) == ["m0", "m1"], "the reader sees it")


def test_an_interrupted_append_is_not_resent_while_its_fate_is_unknown(
        pair: Callable[..., Any], emu: RocksetEmulator) -> None:
    writer, _ = pair(sync_timeout=0.05, retry_attempts=2)
    emu.drop_next(1, after_apply=True)
    with pytest.raises(BackendUnavailableError, match="could not learn"):
        writer.append("s", numbered_records(1))
    document = emu.documents("commons", writer.config.collection)["s"]
    assert contents(document["messages"]) == ["old0", "m0"]


@pytest.mark.parametrize("operation", ["append", "clear"])
def test_a_failed_fence_poll_waits_again_and_never_writes_again(
        pair: Callable[..., Any], emu: RocksetEmulator, operation: str) -> None:
    writer, reader = pair(sync=True)
    emu.before_next("POST", "/offsets/commit", lambda: emu.fail_next(1, status=503))
    if operation == "append":
        writer.append("s", numbered_records(1))
        assert contents(reader.fetch("s")) == ["old0", "m0"]
    else:
        writer.clear("s")
        assert reader.fetch("s") == []
    polls = [method for method, path in emu.requests if path.endswith("/offsets/commit")]
    writes = [method for method, path in emu.requests[:-1] if not path.endswith("/offsets/commit")]
    assert len(polls) >= 2  # the failed poll, then the wait again
    assert writes == (["PATCH"] if operation == "append" else ["POST"])
