import pytest
from langchain_core.messages import HumanMessage

from chathistory import BackendUnavailableError, ChatHistory, ConfigError
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
