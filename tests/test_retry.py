import asyncio

import pytest

from chathistory import BackendUnavailableError, aretry_transient, retry_transient


class Flaky:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def transient(error: BaseException) -> bool:
    return isinstance(error, ConnectionError)


def test_a_call_that_succeeds_runs_once() -> None:
    call = Flaky(0, ConnectionError())
    assert retry_transient(call, backend="x", is_transient=transient) == "ok"
    assert call.calls == 1


def test_transient_failures_are_retried_until_success() -> None:
    call = Flaky(3, ConnectionError("blip"))
    assert retry_transient(call, backend="x", is_transient=transient, attempts=4) == "ok"
    assert call.calls == 4


def test_after_the_last_attempt_the_store_is_unavailable() -> None:
    call = Flaky(10, ConnectionError("down"))
    with pytest.raises(BackendUnavailableError,
                       match=r"backend 'x' is unavailable after 3 attempts: ConnectionError: down"
                       ) as caught:
        retry_transient(call, backend="x", is_transient=transient, attempts=3, max_wait=0.01)
    assert call.calls == 3
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_one_attempt_means_no_retry() -> None:
    call = Flaky(10, ConnectionError("down"))
    with pytest.raises(BackendUnavailableError, match="after 1 attempts"):
        retry_transient(call, backend="x", is_transient=transient, attempts=1)
    assert call.calls == 1


def test_other_errors_pass_through_at_once() -> None:
    call = Flaky(10, KeyError("bug"))
    with pytest.raises(KeyError):
        retry_transient(call, backend="x", is_transient=transient)
    assert call.calls == 1


def test_the_async_twin_retries_the_same_way() -> None:
    call = Flaky(2, ConnectionError("blip"))

    async def attempt() -> str:
        return call()

    assert asyncio.run(aretry_transient(attempt, backend="x", is_transient=transient)) == "ok"
    assert call.calls == 3
    down = Flaky(10, ConnectionError("down"))

    async def failing() -> str:
        return down()

    with pytest.raises(BackendUnavailableError, match="after 2 attempts"):
        asyncio.run(aretry_transient(failing, backend="x", is_transient=transient, attempts=2))
    assert down.calls == 2
