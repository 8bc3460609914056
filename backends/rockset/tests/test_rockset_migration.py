"""Leaving Rockset, end to end: sessions RocksetChatMessageHistory wrote on the emulator,
copied with chathistory.transfer.copy_sessions to the postgres backend on a real server.

PostgreSQL comes from CHATHISTORY_POSTGRES_URL (default: the local server, database
``test``). Each test uses a schema of its own, dropped afterwards. Without a reachable
server (or without chathistory-postgres installed) the tests skip, saying why, unless
CHATHISTORY_REQUIRE_SERVICES=1 makes that a failure.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import secrets
import warnings
from collections.abc import Iterator
from typing import NoReturn

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, messages_to_dict
from rockset_emulator import RocksetEmulator

from chathistory import Backend, ChatHistory, get_backend
from chathistory.testing.samples import sample_messages
from chathistory.transfer import copy_sessions, count_records, list_session_ids

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.chat_message_histories import RocksetChatMessageHistory

API_KEY = "test-key"  # the shared emulator's (conftest.py)
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_names = itertools.count()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CHATHISTORY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (CHATHISTORY_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    if importlib.util.find_spec("chathistory_postgres") is None:
        _unavailable("chathistory-postgres is not installed")
    import psycopg

    url = os.environ.get("CHATHISTORY_POSTGRES_URL") or DEFAULT_URL
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL is not reachable at CHATHISTORY_POSTGRES_URL "
                     f"(or {DEFAULT_URL}): {str(exc).splitlines()[0]}")
    return url


@pytest.fixture
def target(postgres_url: str) -> Iterator[Backend]:
    """The postgres backend on a schema of this test's own, dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"chathistory_rockset_move_{secrets.token_hex(4)}"
    backend = get_backend("postgres", conninfo=postgres_url, schema=schema, table="moved")
    try:
        yield backend
    finally:
        backend.close()
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


@pytest.fixture
def collection() -> str:
    return f"leaving_{next(_names)}"


@pytest.fixture
def source(server: RocksetEmulator, collection: str) -> Iterator[Backend]:
    backend = get_backend("rockset", api_key=API_KEY, host=server.url, collection=collection)
    yield backend
    backend.close()


def theirs(server: RocksetEmulator, collection: str, session_id: str
           ) -> RocksetChatMessageHistory:
    return RocksetChatMessageHistory(session_id=session_id, client=server.client(),
                                     collection=collection)


def write_with_langchain_community(server: RocksetEmulator, collection: str
                                   ) -> dict[str, list[BaseMessage]]:
    """Sessions as RocksetChatMessageHistory writes them, one PATCH per message."""
    sessions: dict[str, list[BaseMessage]] = {
        "every-type": sample_messages(),
        "long": [HumanMessage(f"question {n}") if n % 2 == 0 else AIMessage(f"answer {n}")
                 for n in range(60)],
        "ünïcödé 中文 it's; --": [HumanMessage("héllo\ttab\nnewline"), AIMessage("✓ 🧵")],
    }
    for number in range(12):
        sessions[f"user-{number:02}"] = [HumanMessage(f"hi {number}"),
                                         AIMessage(f"hello {number}", id=f"ai-{number}")]
    for session_id, messages in sessions.items():
        history = theirs(server, collection, session_id)
        for message in messages:
            history.add_message(message)
    emptied = theirs(server, collection, "cleared")
    emptied.add_message(HumanMessage("gone"))
    emptied.clear()
    return sessions


def test_copy_from_langchain_community_layout_to_postgres(
        server: RocksetEmulator, collection: str, source: Backend, target: Backend) -> None:
    sessions = write_with_langchain_community(server, collection)
    ids = sorted(sessions)
    assert list_session_ids(source) == ids  # the cleared session holds nothing to copy

    report = copy_sessions(source, target)

    assert (report.sessions, report.complete, report.mismatched) == (len(ids), 0, [])
    assert report.messages == sum(len(messages) for messages in sessions.values())
    for session_id, messages in sessions.items():
        # Every field of every record, as langchain_community stored it...
        stored = target.fetch(session_id)
        assert stored == source.fetch(session_id) == messages_to_dict(messages)
        # ...and every message as the application reads it back.
        assert ChatHistory(session_id, backend=target).messages == messages
    assert target.fetch("cleared") == []
    assert count_records(target, ids) == count_records(source, ids) == {
        session_id: len(messages) for session_id, messages in sessions.items()}

    again = copy_sessions(source, target)
    assert (again.messages, again.complete, again.mismatched) == (0, len(ids), [])
    assert count_records(target, ids) == count_records(source, ids)


def test_an_interrupted_or_repeated_copy_writes_only_what_is_missing(
        server: RocksetEmulator, collection: str, source: Backend, target: Backend) -> None:
    sessions = write_with_langchain_community(server, collection)
    ids = sorted(sessions)
    # A first run that stopped after two sessions.
    first = copy_sessions(source, target, ids[:2])
    assert first.messages == sum(len(sessions[session_id]) for session_id in ids[:2])
    # Meanwhile the application, still on Rockset, goes on writing one session.
    late = [HumanMessage("written after the first run"), AIMessage("still on Rockset")]
    for message in late:
        theirs(server, collection, ids[0]).add_message(message)
    sessions[ids[0]] = [*sessions[ids[0]], *late]

    rest = copy_sessions(source, target)

    assert rest.messages == sum(len(messages) for messages in sessions.values()) - first.messages
    assert (rest.complete, rest.mismatched) == (1, [])
    for session_id, messages in sessions.items():
        assert target.fetch(session_id) == messages_to_dict(messages)
    assert count_records(target, ids) == count_records(source, ids)


def test_a_session_that_differs_on_the_target_is_left_alone_and_reported(
        server: RocksetEmulator, collection: str, source: Backend, target: Backend) -> None:
    theirs(server, collection, "s").add_message(HumanMessage("on rockset"))
    target.create_collection()
    target.append("s", messages_to_dict([HumanMessage("something else")]))
    report = copy_sessions(source, target)
    assert (report.messages, report.mismatched) == (0, ["s"])
    assert target.fetch("s") == messages_to_dict([HumanMessage("something else")])
