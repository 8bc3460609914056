"""Every fault the emulator injects, against RocksetBackend: nothing lost, nothing duplicated."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from chathistory_rockset.backend import RocksetBackend
from chathistory_rockset.errors import RocksetApiError
from langchain_core.messages import HumanMessage
from rockset_emulator import RocksetEmulator

from chathistory import (
    BackendUnavailableError,
    ChatHistory,
    CollectionMissingError,
    PermissionDeniedError,
)
from chathistory.testing import numbered_records

API_KEY = "test-key"  # the shared emulator's (conftest.py)

COMMIT = "/offsets/commit"


def stored(emu: RocksetEmulator, backend: RocksetBackend, session_id: str) -> list[str]:
    """The session's contents as the server holds them, visible to queries or not."""
    document = emu.documents(backend.config.workspace, backend.config.collection)[session_id]
    return [record["data"]["content"] for record in document[backend.config.messages_key]]


def methods(emu: RocksetEmulator) -> list[str]:
    return [method for method, _ in emu.requests]


# ---- status codes --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_failed_appends_are_retried_once_stored(make_backend: Callable[..., RocksetBackend],
                                                emu: RocksetEmulator, status: int) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(1, prefix="old"))
    emu.reset_request_count()
    emu.fail_next(2, status=status)
    backend.append("s", numbered_records(3))
    assert stored(emu, backend, "s") == ["old0", "m0", "m1", "m2"]
    if status in (429, 503):  # refused, so certainly not applied: simply sent again
        assert methods(emu) == ["PATCH", "PATCH", "PATCH"]
    else:  # a 5xx might have been applied: checked (probe PATCH, fence, query) first
        assert methods(emu) == ["PATCH", "PATCH", "PATCH", "POST", "POST", "PATCH"]


@pytest.mark.parametrize("status", [429, 503])
def test_failed_reads_creates_and_clears_are_retried(make_backend: Callable[..., RocksetBackend],
                                                     emu: RocksetEmulator, status: int) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(2))
    emu.fail_next(2, status=status)
    assert len(backend.fetch("s")) == 2
    emu.fail_next(1, status=status)
    assert len(backend.fetch("s", limit=1)) == 1
    emu.fail_next(3, status=status)
    backend.clear("s")
    assert stored(emu, backend, "s") == []
    fresh = make_backend(create=False)
    emu.fail_next(2, status=status)
    fresh.create_collection()
    fresh.append("s", numbered_records(1))
    assert fresh.fetch("s") == numbered_records(1)


def test_exhausted_retries_raise_unavailable_and_write_nothing(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator) -> None:
    backend = make_backend(retry_attempts=3)
    history = ChatHistory("s", backend=backend)
    assert history.messages == []
    emu.reset_request_count()
    emu.fail_next(3, status=503)
    with pytest.raises(BackendUnavailableError) as raised:
        history.add_messages([HumanMessage("lost?")])
    assert "after 3 attempts" in str(raised.value)
    assert "503" in str(raised.value)
    assert API_KEY not in str(raised.value)
    assert methods(emu) == ["PATCH", "PATCH", "PATCH"]
    assert "s" not in emu.documents("commons", backend.config.collection)
    emu.fail_next(3, status=429)
    with pytest.raises(BackendUnavailableError):
        backend.fetch("s")
    assert backend.fetch("s") == []


def test_server_down_is_unavailable() -> None:
    with RocksetEmulator(api_key=API_KEY) as emu:
        url = emu.url
    backend = RocksetBackend.from_options(api_key=API_KEY, host=url, collection="gone",
                                          retry_attempts=2)
    with pytest.raises(BackendUnavailableError, match="after 2 attempts"):
        backend.create_collection()
    with pytest.raises(BackendUnavailableError):
        backend.append("s", numbered_records(1))
    backend.close()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_at_once(make_backend: Callable[..., RocksetBackend],
                                           emu: RocksetEmulator, status: int) -> None:
    backend = make_backend()
    emu.reset_request_count()
    emu.fail_next(1, status=status)
    with pytest.raises(PermissionDeniedError) as raised:
        backend.append("s", numbered_records(1))
    assert emu.request_count == 1
    assert f"refused the API key ({status})" in str(raised.value)


def test_a_wrong_api_key_raises_at_once_without_showing_it(emu: RocksetEmulator) -> None:
    wrong = "wrong-key-d41d8cd98f"
    backend = RocksetBackend.from_options(api_key=wrong, host=emu.url, collection="any")
    with pytest.raises(PermissionDeniedError) as raised:
        backend.create_collection()
    assert emu.request_count == 1
    assert wrong not in str(raised.value)
    assert wrong not in repr(raised.value)
    assert isinstance(raised.value, PermissionError)
    backend.close()


def test_errors_name_the_server_they_could_not_use(emu: RocksetEmulator) -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{unused.getsockname()[1]}"
    backend = RocksetBackend.from_options(api_key=API_KEY, host=down, collection="any",
                                          retry_attempts=1)
    with pytest.raises(BackendUnavailableError) as unreachable:
        backend.fetch("s")
    assert f"Rockset at {down}" in str(unreachable.value)
    assert "Connection refused" in str(unreachable.value)
    assert "object at 0x" not in str(unreachable.value)  # no urllib3 object's repr
    refusing = RocksetBackend.from_options(api_key="wrong", host=emu.url, collection="any")
    with pytest.raises(PermissionDeniedError, match=f"Rockset at {emu.url} refused the API key"):
        refusing.fetch("s")
    given = RocksetBackend.from_options(client=emu.client(), collection="named")
    with pytest.raises(CollectionMissingError, match=f"does not exist on Rockset at {emu.url} "):
        given.fetch("s")
    given.create_collection()
    emu.fail_next(1, status=400)
    with pytest.raises(RocksetApiError, match=f"Rockset at {emu.url} answered 400"):
        given.fetch("s")


# ---- latency -------------------------------------------------------------------------------


def test_latency_slows_but_loses_nothing(make_backend: Callable[..., RocksetBackend],
                                         emu: RocksetEmulator) -> None:
    backend = make_backend()
    emu.reset_request_count()
    emu.set_latency(0.05)
    started = time.monotonic()
    backend.append("s", numbered_records(3))
    assert [record["data"]["content"] for record in backend.fetch("s", limit=2)] == ["m1", "m2"]
    assert time.monotonic() - started >= 0.05 * emu.request_count


def test_latency_beyond_the_request_timeout_is_unavailable(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator) -> None:
    backend = make_backend(request_timeout=0.1, retry_attempts=2)
    backend.append("s", numbered_records(1))
    emu.set_latency(0.4)
    with pytest.raises(BackendUnavailableError, match="Timeout"):
        backend.fetch("s")
    emu.set_latency(0.0)
    emu.wait_idle()  # the timed-out requests end on the server too
    assert len(backend.fetch("s")) == 1


def test_a_timed_out_append_that_was_applied_is_not_repeated(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator) -> None:
    backend = make_backend(request_timeout=0.15)
    backend.append("s", numbered_records(1, prefix="old"))
    emu.reset_request_count()
    emu.set_latency(0.3)  # the PATCH times out on the client, then applies on the server
    with pytest.raises(BackendUnavailableError, match="ReadTimeoutError"):
        backend.append("s", numbered_records(2))
    emu.set_latency(0.0)
    emu.wait_idle()  # the server applies what the client gave up on
    # The later tries could not learn the outcome (their probes timed out too), so
    # they never sent the batch again: one PATCH, then one probe PATCH per later try.
    assert stored(emu, backend, "s") == ["old0", "m0", "m1"]
    assert methods(emu) == ["PATCH"] * 4


# ---- dropped connections -------------------------------------------------------------------


@pytest.mark.parametrize("given_client", [False, True], ids=["built-client", "given-client"])
@pytest.mark.parametrize("after_apply", [False, True], ids=["before-apply", "after-apply"])
def test_a_dropped_append_is_stored_exactly_once(make_backend: Callable[..., RocksetBackend],
                                                 emu: RocksetEmulator, after_apply: bool,
                                                 given_client: bool) -> None:
    """Neither urllib3 (with retries=False, or its defaults in a given client) nor the
    backend sends the dropped PATCH again blindly."""
    backend = make_backend(client=emu.client()) if given_client else make_backend()
    backend.append("s", numbered_records(1, prefix="old"))
    emu.reset_request_count()
    emu.drop_next(1, after_apply=after_apply)
    backend.append("s", numbered_records(2))
    assert stored(emu, backend, "s") == ["old0", "m0", "m1"]
    assert [record["data"]["content"] for record in backend.fetch("s")] == ["old0", "m0", "m1"]
    # dropped PATCH, then a fenced check (probe PATCH, commit, query) before any re-send
    expected = ["PATCH", "PATCH", "POST", "POST"] + ([] if after_apply else ["PATCH"])
    assert methods(emu)[:len(expected)] == expected
    assert COMMIT in emu.requests[2][1]


@pytest.mark.parametrize("after_apply", [False, True], ids=["before-apply", "after-apply"])
def test_a_dropped_first_append_is_stored_exactly_once(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator,
        after_apply: bool) -> None:
    backend = make_backend()
    emu.drop_next(1, after_apply=after_apply)
    backend.append("new", numbered_records(2))
    assert stored(emu, backend, "new") == ["m0", "m1"]
    emu.drop_next(1)  # the PATCH finding no document drops: its retry still creates it once
    backend.append("newer", numbered_records(1))
    assert stored(emu, backend, "newer") == ["m0"]


@pytest.mark.parametrize("after_apply", [False, True], ids=["before-apply", "after-apply"])
def test_a_dropped_document_creation_is_stored_exactly_once(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator,
        after_apply: bool) -> None:
    backend = make_backend()
    # The first PATCH goes through (it finds no document); the creating POST is dropped.
    emu.before_next("POST", "/docs", lambda: emu.drop_next(1, after_apply=after_apply))
    backend.append("s", numbered_records(3))
    assert stored(emu, backend, "s") == ["m0", "m1", "m2"]


def test_the_duplicate_trap_under_eventual_consistency(
        make_backend: Callable[..., RocksetBackend], emu: RocksetEmulator) -> None:
    """Applied but not yet queryable: only the fenced check can see the write."""
    backend = make_backend()
    backend.append("s", numbered_records(1, prefix="old"))
    emu.set_visibility_delay(0.3)
    emu.drop_next(1, after_apply=True)
    backend.append("s", numbered_records(2))
    assert stored(emu, backend, "s") == ["old0", "m0", "m1"]


def test_repeated_drops_exhaust_the_retries(make_backend: Callable[..., RocksetBackend],
                                            emu: RocksetEmulator) -> None:
    backend = make_backend(retry_attempts=3)
    backend.append("s", numbered_records(1, prefix="old"))
    # Each later try starts with a check whose probe PATCH is a write too: dropped as well.
    emu.drop_next(3, after_apply=True)
    with pytest.raises(BackendUnavailableError, match="after 3 attempts"):
        backend.append("s", numbered_records(1))
    assert stored(emu, backend, "s") == ["old0", "m0"]
    backend.append("s", numbered_records(1, prefix="next"))
    assert stored(emu, backend, "s") == ["old0", "m0", "next0"]


def test_dropped_clears_are_retried(make_backend: Callable[..., RocksetBackend],
                                    emu: RocksetEmulator) -> None:
    backend = make_backend()
    backend.append("s", numbered_records(2))
    emu.drop_next(1, after_apply=True)
    backend.clear("s")
    emu.drop_next(1, after_apply=False)
    backend.clear("s")
    assert backend.fetch("s") == []
