"""An application's unit tests run its agent on the memory fake, unchanged.

The middleware below is built at import time, as an application module
would build it, before any fixture runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from chathistory import BackendUnavailableError, ConfigError
from chathistory.agents import ChatHistoryMiddleware
from chathistory.testing import FakeBackends, fake_backends

UNREACHABLE = "/dev/null/chat.sqlite3"  # under a file: no store can be made there
memory_for_the_app = ChatHistoryMiddleware("sqlite", path=UNREACHABLE, window=20)


def test_without_the_fake_the_app_reaches_for_its_real_store(agents: Any) -> None:
    agent = agents.build(ChatHistoryMiddleware("sqlite", path=UNREACHABLE))
    with pytest.raises(BackendUnavailableError, match="'/dev/null' is not a directory"):
        agent.invoke(agents.ask("Paris"), context={"session_id": "s"})


def test_the_fixture_swaps_a_middleware_built_at_import_time(
        chathistory_fake: FakeBackends, agents: Any, turn_kinds: Any) -> None:
    agent = agents.build(memory_for_the_app)
    agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    agent.invoke(agents.ask("Rome"), context={"session_id": "s"})
    assert agents.kinds(chathistory_fake["sqlite"].fetch("s")) == turn_kinds(2)


def test_the_context_manager_swaps_it_too(agents: Any, turn_kinds: Any) -> None:
    agent = agents.build(memory_for_the_app)
    with fake_backends("sqlite") as fakes:
        agent.invoke(agents.ask("Paris"), context={"session_id": "s"})
    assert agents.kinds(fakes["sqlite"].fetch("s")) == turn_kinds(1)


def test_a_misspelt_option_still_fails_under_the_fake() -> None:
    with fake_backends("sqlite"), pytest.raises(ConfigError, match="unknown option 'pth'"):
        ChatHistoryMiddleware("sqlite", pth="chat.sqlite3")
