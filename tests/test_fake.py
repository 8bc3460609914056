import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.messages import HumanMessage

from chathistory import (
    BackendNotFoundError,
    BackendUnavailableError,
    ChatHistory,
    ConfigError,
    history_factory,
)
from chathistory.registry import NamedBackend
from chathistory.testing import FakeBackends, fake_backends


def application_code(session_id: str, path: str) -> list[str]:
    """Stands for an application that hard-codes its production backend."""
    history = ChatHistory(session_id, backend="sqlite", path=path)
    history.add_user_message("hello")
    return [str(m.content) for m in ChatHistory(session_id, backend="sqlite", path=path).messages]


def test_the_fixture_swaps_named_backends_for_one_shared_fake(
    chathistory_fake: FakeBackends, tmp_path
) -> None:
    path = str(tmp_path / "never-created.sqlite3")
    assert application_code("s", path) == ["hello"]
    assert not (tmp_path / "never-created.sqlite3").exists()
    assert chathistory_fake["sqlite"].calls["append"] == 1
    assert chathistory_fake["sqlite"].sessions() == ["s"]


def test_the_context_manager_does_the_same_outside_pytest(tmp_path) -> None:
    with fake_backends("sqlite") as fakes:
        assert application_code("s", str(tmp_path / "x.sqlite3")) == ["hello"]
        assert fakes["sqlite"].fetch("s")[0]["data"]["content"] == "hello"
    assert not (tmp_path / "x.sqlite3").exists()
    # After the block the real backend is back.
    real = ChatHistory("s", backend="sqlite", path=str(tmp_path / "x.sqlite3"))
    assert real.messages == []


def test_options_are_still_validated_against_the_real_backend() -> None:
    with fake_backends("sqlite"), pytest.raises(ConfigError, match="unknown option 'pth'"):
        ChatHistory("s", backend="sqlite", pth="x")


def test_faults_can_be_injected_into_the_fake() -> None:
    with fake_backends("sqlite") as fakes:
        fakes["sqlite"].fail_next(1)
        with pytest.raises(BackendUnavailableError):
            ChatHistory("s", backend="sqlite").add_messages([HumanMessage("x")])
        ChatHistory("s", backend="sqlite").add_messages([HumanMessage("y")])
        assert [m.content for m in ChatHistory("s", backend="sqlite").messages] == ["y"]


def test_unnamed_backends_are_left_alone(tmp_path) -> None:
    with fake_backends("memory") as fakes:
        real = ChatHistory("s", backend="sqlite", path=str(tmp_path / "real.sqlite3"))
        real.add_user_message("x")
    assert (tmp_path / "real.sqlite3").exists()
    assert "sqlite" not in fakes


def test_a_misspelt_backend_name_in_the_swap_fails_instead_of_leaving_the_real_one(
        tmp_path: Path) -> None:
    # fake_backends("sqlit") swapped nothing, so the code under test wrote its real store.
    with pytest.raises(BackendNotFoundError, match="no backend named 'sqlit'; did you mean "
                                                   "'sqlite'"), fake_backends("sqlit"):
        real = tmp_path / "real.sqlite3"
        ChatHistory("s", backend="sqlite", path=str(real)).add_user_message("x")
    assert not (tmp_path / "real.sqlite3").exists()


# -- an application module whose factory was built at import time ---------------------------

def _import_application() -> ModuleType:
    path = Path(__file__).with_name("application.py")
    spec = importlib.util.spec_from_file_location("chathistory_test_application", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


application = _import_application()  # at import time, before any fixture runs


def test_without_the_fake_the_application_reaches_for_its_real_store() -> None:
    with pytest.raises(BackendUnavailableError, match="is not a directory"):
        application.remember("s", "hello")


def test_the_fixture_swaps_a_factory_built_at_import_time(chathistory_fake: FakeBackends
                                                          ) -> None:
    application.remember("s", "hello")
    application.remember("s", "again")
    assert application.recall("s") == ["hello", "again"]
    assert asyncio.run(application.arecall("s")) == ["hello", "again"]
    assert chathistory_fake["sqlite"].sessions() == ["s"]
    application.announcements.add_user_message("news")
    assert chathistory_fake["sqlite"].sessions() == ["s", "announcements"]
    assert application.memory.backend is chathistory_fake["sqlite"]


def test_the_context_manager_swaps_it_too() -> None:
    with fake_backends("sqlite") as fakes:
        application.remember("s", "hello")
        assert application.recall("s") == ["hello"]
        assert application.get_session_history.backend is fakes["sqlite"]
    assert fakes["sqlite"].calls["append"] == 1
    # Each swap has fresh fakes: nothing of the block above is left.
    with fake_backends("sqlite"):
        assert application.recall("s") == []
    # And after the swap the real store is back.
    with pytest.raises(BackendUnavailableError):
        application.recall("s")


def test_a_misspelt_option_still_fails_when_the_factory_is_built() -> None:
    with fake_backends("sqlite"):
        with pytest.raises(ConfigError, match="unknown option 'pth'"):
            history_factory("sqlite", pth="chat.sqlite3")
        with pytest.raises(ConfigError, match="unknown option 'pth'"):
            ChatHistory("s", backend="sqlite", pth="chat.sqlite3")
    # Outside the swap too, at once: not at the first use.
    with pytest.raises(ConfigError, match="option 'timeout'"):
        history_factory("sqlite", timeout=-1)


def test_a_named_backend_is_built_once_on_first_use_and_closed_by_its_owner(tmp_path: Path
                                                                            ) -> None:
    named = NamedBackend("sqlite", {"path": str(tmp_path / "chat.sqlite3")})
    assert named.built is None and not (tmp_path / "chat.sqlite3").exists()
    factory = history_factory(named)
    factory("a").add_user_message("x")
    assert named.built is not None and factory.backend is named.built
    assert factory("b").backend is named.built
    with fake_backends("sqlite") as fakes:
        assert factory("a").backend is fakes["sqlite"]
    assert [m.text for m in factory("a").messages] == ["x"]
