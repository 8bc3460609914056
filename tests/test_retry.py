import asyncio

import pytest

from chathistory import BackendUnavailableError, aretry_transient, retry_transient
from chathistory.retry import retry_after


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
    with pytest.raises(BackendUnavailableError, match="after 1 attempt: ConnectionError"):
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


class DriverError(Exception):
    """Stands in for a driver's own exception class."""


def translate(error: BaseException) -> BaseException:
    if isinstance(error, DriverError):
        return BackendUnavailableError(f"translated: {error}")
    return error


def driver_transient(error: BaseException) -> bool:
    return isinstance(error, DriverError) and "lost" in str(error)


def test_a_permanent_driver_error_is_translated_at_once_and_chained() -> None:
    call = Flaky(10, DriverError("syntax"))
    with pytest.raises(BackendUnavailableError, match="translated: syntax") as caught:
        retry_transient(call, backend="x", is_transient=driver_transient, translate=translate)
    assert call.calls == 1
    assert isinstance(caught.value.__cause__, DriverError)


def test_a_permanent_error_after_a_transient_one_is_translated_too() -> None:
    outcomes: list[Exception] = [DriverError("lost"), DriverError("refused for good")]

    def call() -> str:
        raise outcomes.pop(0)

    with pytest.raises(BackendUnavailableError, match="translated: refused for good"):
        retry_transient(call, backend="x", is_transient=driver_transient, translate=translate)
    assert outcomes == []


def test_an_error_translate_leaves_alone_is_raised_unchanged() -> None:
    call = Flaky(10, KeyError("bug"))
    with pytest.raises(KeyError):
        retry_transient(call, backend="x", is_transient=driver_transient, translate=translate)


def test_exhaustion_names_the_translated_cause() -> None:
    call = Flaky(10, DriverError("lost"))
    with pytest.raises(BackendUnavailableError,
                       match=r"backend 'x' is unavailable after 2 attempts: translated: lost"
                       ) as caught:
        retry_transient(call, backend="x", is_transient=driver_transient, translate=translate,
                        attempts=2)
    assert isinstance(caught.value.__cause__, DriverError)


def test_the_async_twin_translates_the_same_way() -> None:
    call = Flaky(10, DriverError("syntax"))

    async def attempt() -> str:
        return call()

    with pytest.raises(BackendUnavailableError, match="translated: syntax"):
        asyncio.run(aretry_transient(attempt, backend="x", is_transient=driver_transient,
                                     translate=translate))
    lost = Flaky(1, DriverError("lost"))

    async def flaky() -> str:
        return lost()

    assert asyncio.run(aretry_transient(flaky, backend="x", is_transient=driver_transient,
                                        translate=translate)) == "ok"


def test_each_retry_is_announced_with_its_try_number_and_error() -> None:
    call = Flaky(3, ConnectionError("blip"))
    told: list[tuple[int, str]] = []
    assert retry_transient(call, backend="x", is_transient=transient, max_wait=0.01,
                           on_retry=lambda attempt, error: told.append((attempt, str(error)))
                           ) == "ok"
    assert told == [(1, "blip"), (2, "blip"), (3, "blip")]
    down = Flaky(10, ConnectionError("down"))
    told.clear()

    async def failing() -> str:
        return down()

    with pytest.raises(BackendUnavailableError, match="after 3 attempts"):
        asyncio.run(aretry_transient(failing, backend="x", is_transient=transient, attempts=3,
                                     max_wait=0.01, on_retry=lambda n, e: told.append((n, "")))
                    )
    assert [attempt for attempt, _ in told] == [1, 2]  # the last try is not retried


def test_retry_after_continues_from_a_first_try_made_by_the_caller() -> None:
    call = Flaky(10, ConnectionError("down"))
    call.calls = 1  # the caller's own first try failed
    with pytest.raises(BackendUnavailableError, match="after 3 attempts: ConnectionError: down"):
        retry_after(ConnectionError("down"), call, backend="x", is_transient=transient,
                    attempts=3, max_wait=0.01)
    assert call.calls == 3
    refused = Flaky(0, KeyError("bug"))
    with pytest.raises(KeyError):
        retry_after(KeyError("bug"), refused, backend="x", is_transient=transient)
    assert refused.calls == 0  # not transient: no second try


def test_exhaustion_by_one_of_our_errors_says_it_once_without_its_class() -> None:
    # A backend's translate may give back one of our errors as it is (postgres's failed
    # connect): its message already says what failed, naming the backend.
    refused = BackendUnavailableError("backend 'x' cannot connect to db:5432: refused")
    call = Flaky(10, refused)
    with pytest.raises(BackendUnavailableError) as caught:
        retry_transient(call, backend="x", is_transient=lambda error: error is refused,
                        translate=lambda error: error, attempts=2)
    assert str(caught.value) == ("backend 'x' is unavailable after 2 attempts: "
                                 "cannot connect to db:5432: refused")
