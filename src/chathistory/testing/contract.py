"""The conformance suite every backend passes.

Subclass :class:`BackendContract` in a test module and provide a ``backend``
fixture that yields a fresh, empty, created backend::

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            backend = MyBackend(MyBackend.Config(path=tmp_path / "db"))
            backend.create_collection()
            yield backend
            backend.close()

A store that accepts only some session ids (UUIDs, say) also overrides
``make_session_id``; every session id the suite uses goes through it.

A layout that truly cannot hold a NUL character in a string (a peer's
table the backend reads in place) overrides ``holds_nul`` to return False;
the suite then checks that such a record is refused with ``RecordError``.

Reads must create nothing (see :mod:`chathistory.testing.reads_contract`):
the suite compares ``store_snapshot()`` (by default, every path under the
test's ``tmp_path``) before and after each read. A store kept elsewhere (a
server) overrides ``store_snapshot``; every backend should also provide
``uncreated_backend``, one whose store was never created.

The fixture's teardown must not assume the backend is still open: one test
closes it. Async twins are driven with ``asyncio.run``, so no async pytest
plugin is needed, and under blockbuster's detector (:func:`run_without_blocking`):
a blocking call on the event loop (``time.sleep``, file or socket I/O, a
contended lock) fails the test. ``BaseBackend``'s default twins run the sync
methods in a worker thread, which is not the loop, so they pass.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

from chathistory import Backend, ChatHistory, RecordError
from chathistory.testing.blocking import run_without_blocking
from chathistory.testing.capability_contract import CapabilityContract
from chathistory.testing.reads_contract import ReadsContract
from chathistory.testing.samples import HOSTILE_SESSION_IDS, numbered_records, sample_messages

__all__ = ["BackendContract", "MakeSessionId", "run_without_blocking"]

MakeSessionId = Callable[[str], str]
"""Turns a name the suite uses ("s", "shared", a hostile string) into a session id."""


def _contents(records: list[dict[str, Any]]) -> list[str]:
    return [record["data"]["content"] for record in records]


class BackendContract(CapabilityContract, ReadsContract):
    """What every backend must do. Override the ``backend`` fixture; inherit the tests."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("override the `backend` fixture: a fresh, empty, created backend")

    @pytest.fixture
    def make_session_id(self) -> MakeSessionId:
        """The session id for each name the suite uses. Default: the name itself.

        Override it for a store that constrains ids. It must give the same id
        for the same name and different ids for different names, for example
        ``lambda name: str(uuid.uuid5(uuid.NAMESPACE_URL, name))``.
        """
        return str

    @pytest.fixture
    def holds_nul(self) -> bool:
        """Whether the layout stores strings holding NUL (U+0000). Default: True.

        Every layout of our own does, and a new one should: a message's text
        can hold any character. Return False only for a peer's layout that
        truly cannot (a table read in place); the suite then checks that a
        record with NUL is refused with ``RecordError``, nothing written.
        """
        return True

    def test_satisfies_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)

    def test_create_collection_is_idempotent(self, backend: Backend,
                                             make_session_id: MakeSessionId) -> None:
        session = make_session_id("s")
        backend.append(session, numbered_records(2))
        backend.create_collection()
        backend.create_collection()
        assert _contents(backend.fetch(session)) == ["m0", "m1"]

    def test_append_then_fetch_returns_exactly_the_records(
        self, backend: Backend, make_session_id: MakeSessionId
    ) -> None:
        records = [message_to_dict(message) for message in sample_messages()]
        backend.append(make_session_id("s"), records)
        assert backend.fetch(make_session_id("s")) == records

    def test_batches_keep_their_order(self, backend: Backend,
                                      make_session_id: MakeSessionId) -> None:
        session, records = make_session_id("s"), numbered_records(9)
        for batch in (records[:2], records[2:3], records[3:]):
            backend.append(session, batch)
        assert backend.fetch(session) == records

    def test_empty_batch_changes_nothing(self, backend: Backend,
                                        make_session_id: MakeSessionId) -> None:
        session = make_session_id("s")
        backend.append(session, [])
        assert backend.fetch(session) == []
        backend.append(session, numbered_records(1))
        backend.append(session, [])
        assert _contents(backend.fetch(session)) == ["m0"]

    @pytest.mark.parametrize("limit", [0, 1, 3, 7, 10, 50])
    def test_limit_gives_the_newest_oldest_first(self, backend: Backend,
                                                 make_session_id: MakeSessionId,
                                                 limit: int) -> None:
        session, records = make_session_id("s"), numbered_records(7)
        backend.append(session, records[:4])
        backend.append(session, records[4:])
        expected = records[max(0, len(records) - limit):]
        assert backend.fetch(session, limit=limit) == expected

    def test_unknown_session_is_empty(self, backend: Backend,
                                      make_session_id: MakeSessionId) -> None:
        backend.append(make_session_id("known"), numbered_records(1))
        assert backend.fetch(make_session_id("unknown")) == []
        assert backend.fetch(make_session_id("unknown"), limit=5) == []

    def test_sessions_are_isolated(self, backend: Backend,
                                   make_session_id: MakeSessionId) -> None:
        a, b = make_session_id("a"), make_session_id("b")
        backend.append(a, numbered_records(3, prefix="a"))
        backend.append(b, numbered_records(2, prefix="b"))
        backend.append(a, numbered_records(1, prefix="a-late"))
        assert _contents(backend.fetch(a)) == ["a0", "a1", "a2", "a-late0"]
        backend.clear(a)
        assert backend.fetch(a) == []
        assert _contents(backend.fetch(b)) == ["b0", "b1"]

    def test_clear_then_append_starts_afresh(self, backend: Backend,
                                             make_session_id: MakeSessionId) -> None:
        session = make_session_id("s")
        backend.append(session, numbered_records(3))
        backend.clear(session)
        backend.clear(session)
        backend.clear(make_session_id("never-written"))
        backend.append(session, numbered_records(1, prefix="new"))
        assert _contents(backend.fetch(session)) == ["new0"]

    def test_session_ids_are_values_not_syntax(self, backend: Backend,
                                               make_session_id: MakeSessionId) -> None:
        sessions = [make_session_id(name) for name in HOSTILE_SESSION_IDS]
        for number, session in enumerate(sessions):
            backend.append(session, numbered_records(2, prefix=f"{number}-"))
        for number, session in enumerate(sessions):
            assert _contents(backend.fetch(session)) == [f"{number}-0", f"{number}-1"]
            assert _contents(backend.fetch(session, limit=1)) == [f"{number}-1"]
        backend.clear(sessions[0])
        assert backend.fetch(sessions[0]) == []
        assert len(backend.fetch(sessions[1])) == 2

    def test_non_ascii_large_and_deeply_nested_records(self, backend: Backend,
                                                       make_session_id: MakeSessionId) -> None:
        nested: dict[str, Any] = {"leaf": ["ok", 1, 2.5, None, False]}
        for depth in range(40):
            nested = {f"level{depth}": nested, "list": [depth, {"n": depth}]}
        records = [
            message_to_dict(HumanMessage("naïve café, Ελληνικά, العربية, 日本語, 🧪\u2028")),
            message_to_dict(HumanMessage("x" * 1_000_000)),
            message_to_dict(HumanMessage("nested", additional_kwargs={"tree": nested})),
        ]
        backend.append(make_session_id("s"), records)
        assert backend.fetch(make_session_id("s")) == records

    def test_strings_with_nul_characters_round_trip(self, backend: Backend,
                                                    make_session_id: MakeSessionId,
                                                    holds_nul: bool) -> None:
        session, before = make_session_id("s"), numbered_records(1)
        with_nul = [
            message_to_dict(HumanMessage("before\x00after", name="na\x00me",
                                         additional_kwargs={"note": "v\x00", "list": ["\x00"]})),
            message_to_dict(AIMessage("\x00", additional_kwargs={"nested": {"k": "\x00\x00"}})),
        ]
        backend.append(session, before)
        if not holds_nul:
            with pytest.raises(RecordError, match="NUL"):
                backend.append(session, with_nul)
            with pytest.raises(RecordError, match="NUL"):
                run_without_blocking(backend.aappend(session, with_nul))
            assert backend.fetch(session) == before
            return
        backend.append(session, with_nul)
        run_without_blocking(backend.aappend(session, with_nul[::-1]))
        assert backend.fetch(session) == before + with_nul + with_nul[::-1]
        assert backend.fetch(session, limit=2) == with_nul[::-1]

    def test_unserializable_record_is_refused_and_nothing_is_written(
        self, backend: Backend, make_session_id: MakeSessionId
    ) -> None:
        bad = message_to_dict(HumanMessage("bad", additional_kwargs={"when": object()}))
        with pytest.raises(RecordError):
            backend.append(make_session_id("s"), [numbered_records(1)[0], bad])
        assert backend.fetch(make_session_id("s")) == []

    def test_returned_records_are_copies(self, backend: Backend,
                                         make_session_id: MakeSessionId) -> None:
        session = make_session_id("s")
        backend.append(session, numbered_records(1))
        first = backend.fetch(session)
        first[0]["data"]["content"] = "changed"
        first.append({"type": "human"})
        assert _contents(backend.fetch(session)) == ["m0"]

    def test_concurrent_appends_lose_nothing_and_keep_each_writers_order(
        self, backend: Backend, make_session_id: MakeSessionId
    ) -> None:
        session, writers, batches = make_session_id("shared"), 6, 8
        errors: list[BaseException] = []

        def write(writer: int) -> None:
            try:
                for batch in range(batches):
                    backend.append(session, [
                        message_to_dict(HumanMessage(f"w{writer}-b{batch}-{part}"))
                        for part in range(2)
                    ])
            except BaseException as exc:  # reported below, with the test's assertion
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        contents = _contents(backend.fetch(session))
        assert len(contents) == len(set(contents)) == writers * batches * 2
        for writer in range(writers):
            own = [text for text in contents if text.startswith(f"w{writer}-")]
            assert own == [f"w{writer}-b{batch}-{part}"
                           for batch in range(batches) for part in range(2)]
        for start in range(0, len(contents), 2):
            pair = contents[start:start + 2]
            assert pair[0].rsplit("-", 1)[0] == pair[1].rsplit("-", 1)[0], "a batch was split"

    def test_async_twins_behave_like_the_sync_methods(self, backend: Backend,
                                                      make_session_id: MakeSessionId) -> None:
        session, other = make_session_id("s"), make_session_id("other")
        records = numbered_records(5)

        async def scenario() -> None:
            await backend.acreate_collection()
            await backend.aappend(session, records[:3])
            await backend.aappend(session, records[3:])
            await backend.aappend(other, records[:1])
            assert await backend.afetch(session) == records
            assert await backend.afetch(session, limit=2) == records[3:]
            assert await backend.afetch(session, limit=0) == []
            assert await backend.afetch(make_session_id("missing")) == []
            await backend.aclear(session)
            assert await backend.afetch(session) == []
            assert await backend.afetch(other) == records[:1]

        run_without_blocking(scenario())
        assert backend.fetch(other) == records[:1]

    def test_async_appends_run_concurrently_without_loss(self, backend: Backend,
                                                         make_session_id: MakeSessionId) -> None:
        session = make_session_id("s")

        async def scenario() -> list[dict[str, Any]]:
            await asyncio.gather(*(
                backend.aappend(session, numbered_records(3, prefix=f"t{task}-"))
                for task in range(8)
            ))
            return await backend.afetch(session)

        contents = _contents(run_without_blocking(scenario()))
        assert sorted(contents) == sorted(f"t{task}-{n}" for task in range(8) for n in range(3))
        for task in range(8):
            assert [text for text in contents if text.startswith(f"t{task}-")] == [
                f"t{task}-0", f"t{task}-1", f"t{task}-2"]

    def test_async_refuses_unserializable_records_too(self, backend: Backend,
                                                     make_session_id: MakeSessionId) -> None:
        bad = message_to_dict(HumanMessage("bad", additional_kwargs={"x": {1, 2}}))
        with pytest.raises(RecordError):
            run_without_blocking(
                backend.aappend(make_session_id("s"), [numbered_records(1)[0], bad]))
        assert backend.fetch(make_session_id("s")) == []

    def test_chat_history_round_trips_every_message_type(
        self, backend: Backend, make_session_id: MakeSessionId
    ) -> None:
        history = ChatHistory(make_session_id("round-trip"), backend=backend)
        messages = sample_messages()
        history.add_messages(messages)
        assert history.messages == messages
        assert history.get_messages(limit=2) == messages[-2:]
        assert run_without_blocking(history.aget_messages()) == messages

    def test_close_is_idempotent(self, backend: Backend, make_session_id: MakeSessionId) -> None:
        backend.append(make_session_id("s"), numbered_records(1))
        backend.close()
        backend.close()
        run_without_blocking(backend.aclose())
