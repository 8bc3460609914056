"""Stands for an application module, as the docs recommend writing one.

Its history factory, a history and its agent middleware are built at import
time, before any test fixture runs, against a store the tests cannot reach:
a unit test that does not swap in the fake fails loudly.
"""

from __future__ import annotations

from chathistory import ChatHistory, ChatHistoryMiddleware, history_factory

UNREACHABLE = "/dev/null/application/chat.sqlite3"  # under a file: nothing can be made there

get_session_history = history_factory("sqlite", path=UNREACHABLE)
announcements = ChatHistory("announcements", backend="sqlite", path=UNREACHABLE)
memory = ChatHistoryMiddleware("sqlite", path=UNREACHABLE, window=20)


def remember(session_id: str, text: str) -> None:
    get_session_history(session_id).add_user_message(text)


def recall(session_id: str) -> list[str]:
    return [message.text for message in get_session_history(session_id).messages]


async def arecall(session_id: str) -> list[str]:
    return [message.text for message in await get_session_history(session_id).aget_messages()]
