"""Retry transient failures with bounded backoff, then raise BackendUnavailableError.

This is the one retry path of chathistory: every backend runs its calls
through :func:`retry_transient` or :func:`aretry_transient`. A backend says
what is transient (a dropped connection before the request was sent, a 503)
and how a driver error reads as a chathistory error (``translate``); these
helpers run the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from chathistory.errors import BackendUnavailableError, ChatHistoryError

__all__ = [
    "OnRetry",
    "Translate",
    "aretry_after",
    "aretry_transient",
    "retry_after",
    "retry_transient",
]

T = TypeVar("T")

Translate = Callable[[BaseException], BaseException]
"""Turns a driver's error into a chathistory error (or returns it unchanged)."""

OnRetry = Callable[[int, BaseException], None]
"""Told of each failed try that will be retried: its number (1 for the first) and its error."""

_FIRST_WAIT = 0.05  # seconds before the second attempt; tenacity backs off after that


def _policy(is_transient: Callable[[BaseException], bool], attempts: int, max_wait: float,
            on_retry: OnRetry | None) -> dict[str, object]:
    policy: dict[str, object] = {
        "stop": stop_after_attempt(attempts),
        "wait": wait_exponential_jitter(multiplier=0.1, max=max_wait, jitter=0.05),
        "retry": retry_if_exception(is_transient),
        "reraise": False,
    }
    if on_retry is not None:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            if error is not None:
                # The bare first try is attempt 1; tenacity counts from the second.
                on_retry(state.attempt_number + 1, error)

        policy["before_sleep"] = before_sleep
    return policy


def _first_failed(error: Exception, backend: str, is_transient: Callable[[BaseException], bool],
                  translate: Translate | None, attempts: int, on_retry: OnRetry | None) -> None:
    """Judge the bare first try's ``error``: raise it, or return to retry it."""
    if not is_transient(error):
        _raise_final(error, translate)
    if attempts <= 1:
        raise _unavailable(backend, attempts, error, translate) from error
    if on_retry is not None:
        on_retry(1, error)


@contextmanager
def _final_errors(backend: str, attempts: int, translate: Translate | None) -> Iterator[None]:
    """How the retried tries end: still transient after the last, or an error not to retry."""
    try:
        yield
    except RetryError as retried:
        cause = retried.last_attempt.exception()
        raise _unavailable(backend, attempts, cause, translate) from cause
    except Exception as final:
        _raise_final(final, translate)


def _raise_final(error: BaseException, translate: Translate | None) -> NoReturn:
    """Raise a non-transient ``error``, translated when the backend gave a translation."""
    translated = translate(error) if translate is not None else error
    if translated is error:
        raise error
    raise translated from error


def _unavailable(backend: str, attempts: int, cause: BaseException | None,
                 translate: Translate | None) -> BackendUnavailableError:
    described: BaseException | None = cause
    if translate is not None and cause is not None:
        described = translate(cause)
    if described is cause and not isinstance(cause, ChatHistoryError):
        reason = f"{type(cause).__name__}: {cause}"  # a driver's error: its class says much
    else:  # ours says what it is, and names the backend only once
        reason = str(described).removeprefix(f"backend {backend!r} ")
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return BackendUnavailableError(f"backend {backend!r} is unavailable after {tries}: {reason}")


def retry_transient(call: Callable[[], T], *, backend: str,
                    is_transient: Callable[[BaseException], bool],
                    translate: Translate | None = None,
                    attempts: int = 4, max_wait: float = 1.0,
                    on_retry: OnRetry | None = None) -> T:
    """Run ``call``; retry it while it raises a transient error, at most ``attempts`` times.

    Args:
        call: The operation, with no arguments. It must be safe to run again
            whenever ``is_transient`` says its error is transient.
        backend: The backend's name (or name and address), for the error message.
        is_transient: Whether an error may be retried.
        translate: Turns a driver error into a chathistory error. Errors that
            are not transient are raised as ``translate(error)`` (chained to the
            original); the final transient error's translation is named in the
            "unavailable" message.
        attempts: Tries in all, the first included.
        max_wait: The longest wait between two tries, in seconds.
        on_retry: Called before each retry's wait with the failed try's number
            and error (the runner logs it there).

    Raises:
        BackendUnavailableError: still transient after the last attempt (the
            original error is its ``__cause__``).
        Exception: any error ``is_transient`` rejects, at once, translated.
    """
    # The first try runs bare: building a tenacity retrier costs microseconds
    # that a call which succeeds should not pay.
    try:
        return call()
    except Exception as error:
        return retry_after(error, call, backend=backend, is_transient=is_transient,
                           translate=translate, attempts=attempts, max_wait=max_wait,
                           on_retry=on_retry)


def retry_after(error: Exception, call: Callable[[], T], *, backend: str,
                is_transient: Callable[[BaseException], bool],
                translate: Translate | None = None, attempts: int = 4,
                max_wait: float = 1.0, on_retry: OnRetry | None = None) -> T:
    """The rest of :func:`retry_transient`, once its first try of ``call`` raised ``error``.

    For a caller that makes the first try itself, at no cost when it succeeds
    (the runner does); the arguments are :func:`retry_transient`'s.
    """
    _first_failed(error, backend, is_transient, translate, attempts, on_retry)
    time.sleep(_FIRST_WAIT)
    with _final_errors(backend, attempts, translate):
        for attempt in Retrying(**_policy(is_transient, attempts - 1, max_wait, on_retry)):  # type: ignore[arg-type]
            with attempt:
                return call()
    raise AssertionError("unreachable")  # pragma: no cover


async def aretry_transient(call: Callable[[], Awaitable[T]], *, backend: str,
                           is_transient: Callable[[BaseException], bool],
                           translate: Translate | None = None,
                           attempts: int = 4, max_wait: float = 1.0,
                           on_retry: OnRetry | None = None) -> T:
    """Async :func:`retry_transient`: ``call`` returns an awaitable, waits do not block."""
    try:
        return await call()
    except Exception as error:
        return await aretry_after(error, call, backend=backend, is_transient=is_transient,
                                  translate=translate, attempts=attempts, max_wait=max_wait,
                                  on_retry=on_retry)


async def aretry_after(error: Exception, call: Callable[[], Awaitable[T]], *, backend: str,
                       is_transient: Callable[[BaseException], bool],
                       translate: Translate | None = None, attempts: int = 4,
                       max_wait: float = 1.0, on_retry: OnRetry | None = None) -> T:
    """Async :func:`retry_after`."""
    _first_failed(error, backend, is_transient, translate, attempts, on_retry)
    await asyncio.sleep(_FIRST_WAIT)
    with _final_errors(backend, attempts, translate):
        async for attempt in AsyncRetrying(**_policy(is_transient, attempts - 1, max_wait,
                                                     on_retry)):  # type: ignore[arg-type]
            with attempt:
                return await call()
    raise AssertionError("unreachable")  # pragma: no cover
