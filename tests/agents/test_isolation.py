"""Sessions never cross, whatever thread a run uses; loaded messages keep their ids."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from chathistory import ChatHistory
from chathistory.agents import ChatHistoryMiddleware
from chathistory.backends.memory import MemoryBackend


def texts(messages: list[BaseMessage]) -> set[str]:
    return {message.text for message in messages}


def test_alice_and_bob_on_one_thread_see_only_their_own_history(agents: Any) -> None:
    memory = MemoryBackend()
    model, sent = agents.watched_model()
    agent = agents.build(ChatHistoryMiddleware(memory), model, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "the-only-thread"}}

    agent.invoke(agents.ask("Paris"), context={"session_id": "alice"}, config=config)
    sent.clear()
    agent.invoke(agents.ask("Rome"), context={"session_id": "bob"}, config=config)
    assert not any("Paris" in text for prompt in sent for text in texts(prompt))
    sent.clear()
    agent.invoke(agents.ask("Oslo"), context={"session_id": "alice"}, config=config)
    assert not any("Rome" in text for prompt in sent for text in texts(prompt))
    assert "sunny in Paris" in texts(sent[0])

    assert [record["data"]["content"] for record in memory.fetch("bob")
            if record["type"] == "human"] == ["Rome"]
    assert [record["data"]["content"] for record in memory.fetch("alice")
            if record["type"] == "human"] == ["Paris", "Oslo"]


def test_alice_and_bob_on_one_thread_async(agents: Any) -> None:
    memory = MemoryBackend()
    model, sent = agents.watched_model()
    agent = agents.build(ChatHistoryMiddleware(memory), model, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "the-only-thread"}}

    async def conversation() -> None:
        await agent.ainvoke(agents.ask("Paris"), context={"session_id": "alice"}, config=config)
        sent.clear()
        await agent.ainvoke(agents.ask("Rome"), context={"session_id": "bob"}, config=config)

    asyncio.run(conversation())
    assert not any("Paris" in text for prompt in sent for text in texts(prompt))
    assert [record["data"]["content"] for record in memory.fetch("bob")
            if record["type"] == "human"] == ["Rome"]
    assert len(memory.fetch("alice")) == 4


def test_the_same_session_on_its_thread_is_not_loaded_again(agents: Any) -> None:
    memory = MemoryBackend()
    agent = agents.build(ChatHistoryMiddleware(memory), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    for city in ["Paris", "Rome"]:
        agent.invoke(agents.ask(city), context={"session_id": "alice"}, config=config)
    assert memory.calls["fetch"] == 1
    assert len(memory.fetch("alice")) == 8


def test_a_message_stored_without_an_id_keeps_one_id_as_the_session_grows(agents: Any) -> None:
    memory = MemoryBackend()
    history = ChatHistory("s", backend=memory)
    history.add_messages([message for number in range(6)
                          for message in (HumanMessage(f"q{number}"), AIMessage(f"a{number}"))])
    assert all(record["data"]["id"] is None for record in memory.fetch("s"))

    ids_by_text: dict[str, set[str | None]] = {}
    for more in range(3):
        model, sent = agents.watched_model()
        agents.build(ChatHistoryMiddleware(memory, window=6), model).invoke(
            agents.ask(f"new{more}"), context={"session_id": "s"})
        for message in sent[0][:-1]:
            if message.text[:1] in ("q", "a", "l", "r"):  # the ones stored without an id
                ids_by_text.setdefault(message.text, set()).add(message.id)
        history.add_messages([HumanMessage(f"later{more}"), AIMessage(f"reply{more}")])

    # q5 is message 10 of the session on every load, however far the window slid.
    assert ids_by_text["q5"] == {"chathistory-10"}
    assert ids_by_text["a5"] == {"chathistory-11"}
    assert ids_by_text["later0"] == {"chathistory-16"}  # after q0..a5 and the first run's 4
    assert all(len(ids) == 1 for ids in ids_by_text.values()), ids_by_text


def test_a_thread_saved_by_the_previous_version_stores_nothing_twice(agents: Any) -> None:
    # The previous version kept the ids of the stored messages under chathistory_stored_ids
    # and never loaded again once it was set: its threads hold the whole conversation.
    memory = MemoryBackend()
    earlier: list[BaseMessage] = []
    for turn in range(6):
        earlier += [HumanMessage(f"q{turn}", id=f"h{turn}"), AIMessage(f"a{turn}", id=f"a{turn}")]
    ChatHistory("alice", backend=memory).add_messages(earlier)
    agent = agents.build(ChatHistoryMiddleware(memory, window=4), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "saved-before-the-upgrade"}}
    # As the previous version's after_agent left the thread.
    agent.update_state(config, {"messages": earlier,
                                "chathistory_stored_ids": [m.id for m in earlier]},
                       as_node="ChatHistoryMiddleware.after_agent")

    agent.invoke(agents.ask("Paris"), context={"session_id": "alice"}, config=config)
    agent.invoke(agents.ask("Rome"), context={"session_id": "alice"}, config=config)

    stored = memory.fetch("alice")
    assert [record["data"]["id"] for record in stored[:12]] == [m.id for m in earlier]
    assert agents.kinds(stored[12:]) == [*agents.ONE_TURN, *agents.ONE_TURN]
    assert agent.get_state(config).values["chathistory_stored_ids"] == []
