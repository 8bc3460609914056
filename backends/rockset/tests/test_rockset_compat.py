"""Both directions with langchain_community's RocksetChatMessageHistory, on one emulator."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from rockset_emulator import RocksetEmulator

from chathistory import ChatHistory
from chathistory.testing.samples import sample_messages

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RocksetChatMessageHistory

API_KEY = "test-key"  # the shared emulator's (conftest.py)
_names = itertools.count()


@pytest.fixture
def collection() -> str:
    return f"compat_{next(_names)}"


def theirs(server: RocksetEmulator, collection: str, session_id: str, **options: Any
           ) -> RocksetChatMessageHistory:
    return RocksetChatMessageHistory(session_id=session_id, client=server.client(),
                                     collection=collection, **options)


def ours(server: RocksetEmulator, collection: str, session_id: str, **options: Any
         ) -> ChatHistory:
    return ChatHistory(session_id, backend="rockset", api_key=API_KEY, host=server.url,
                       collection=collection, **options)


def test_we_read_and_extend_what_they_wrote(server: RocksetEmulator, collection: str) -> None:
    their_history = theirs(server, collection, "s1")  # creates the collection and document
    their_history.add_messages(sample_messages())
    our_history = ours(server, collection, "s1")
    assert our_history.messages == sample_messages()
    assert our_history.get_messages(limit=2) == sample_messages()[-2:]
    our_history.add_messages([HumanMessage("from us"), AIMessage("also from us")])
    expected = [*sample_messages(), HumanMessage("from us"), AIMessage("also from us")]
    assert their_history.messages == expected
    assert our_history.messages == expected


def test_they_read_and_extend_what_we_wrote(server: RocksetEmulator, collection: str) -> None:
    our_history = ours(server, collection, "s1")  # creates the collection and, on write, the doc
    our_history.add_messages(sample_messages())
    their_history = theirs(server, collection, "s1")
    assert their_history.messages == sample_messages()
    their_history.add_message(HumanMessage("from them"))
    assert our_history.messages == [*sample_messages(), HumanMessage("from them")]
    assert theirs(server, collection, "never-written").messages == []


def test_their_sync_reader_finds_messages_we_gave_ids(server: RocksetEmulator, collection: str
                                                      ) -> None:
    ids = (f"id-{n}" for n in itertools.count())
    our_history = ours(server, collection, "s1", message_uuid_method=lambda: next(ids))
    our_history.add_messages([HumanMessage("hello")])
    rows = server.client().sql(
        f'SELECT * FROM UNNEST((SELECT "messages" FROM "commons"."{collection}" '
        "WHERE _id = :session_id)) AS message WHERE message.data.additional_kwargs.id = :id "
        "LIMIT 1", params={"session_id": "s1", "id": "id-0"}).results
    assert [row["data"]["content"] for row in rows] == ["hello"]


def test_clear_works_across_both(server: RocksetEmulator, collection: str) -> None:
    our_history = ours(server, collection, "s1")
    our_history.add_messages([HumanMessage("one"), AIMessage("two")])
    their_history = theirs(server, collection, "s1")
    our_history.clear()
    assert their_history.messages == []
    their_history.add_message(HumanMessage("after our clear"))  # their object still works
    assert our_history.messages == [HumanMessage("after our clear")]
    their_history.clear()
    assert our_history.messages == []
    our_history.add_messages([HumanMessage("after their clear")])
    assert their_history.messages == [HumanMessage("after their clear")]


def test_sessions_stay_apart_across_both(server: RocksetEmulator, collection: str) -> None:
    ours(server, collection, "a").add_messages([HumanMessage("ours in a")])
    theirs(server, collection, "b").add_message(HumanMessage("theirs in b"))
    ours(server, collection, "b").clear()
    assert theirs(server, collection, "a").messages == [HumanMessage("ours in a")]
    assert ours(server, collection, "b").messages == []
