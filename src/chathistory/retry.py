"""Retry transient failures with bounded backoff, then raise BackendUnavailableError.

Backends decide what is transient (a dropped connection, a 503) and whether a
call is safe to repeat; these helpers only run the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from chathistory.errors import BackendUnavailableError

__all__ = ["aretry_transient", "retry_transient"]

T = TypeVar("T")

_FIRST_WAIT = 0.05  # seconds before the second attempt; tenacity backs off after that


def _policy(is_transient: Callable[[BaseException], bool], attempts: int, max_wait: float
            ) -> dict[str, object]:
    return {
        "stop": stop_after_attempt(attempts),
        "wait": wait_exponential_jitter(multiplier=0.1, max=max_wait, jitter=0.05),
        "retry": retry_if_exception(is_transient),
        "reraise": False,
    }


def _unavailable(backend: str, attempts: int, cause: BaseException | None
                 ) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend {backend!r} is unavailable after {attempts} attempts: "
        f"{type(cause).__name__}: {cause}"
    )


def retry_transient(call: Callable[[], T], *, backend: str,
                    is_transient: Callable[[BaseException], bool],
                    attempts: int = 4, max_wait: float = 1.0) -> T:
    """Run ``call``; retry it while it raises a transient error, at most ``attempts`` times.

    Raises:
        BackendUnavailableError: still transient after the last attempt (the
            original error is its ``__cause__``).
        Exception: any error ``is_transient`` rejects, at once and unchanged.
    """
    # The first try runs bare: building a tenacity retrier costs microseconds
    # that a call which succeeds should not pay.
    try:
        return call()
    except Exception as error:
        if not is_transient(error):
            raise
        if attempts <= 1:
            raise _unavailable(backend, attempts, error) from error
    time.sleep(_FIRST_WAIT)
    try:
        for attempt in Retrying(**_policy(is_transient, attempts - 1, max_wait)):  # type: ignore[arg-type]
            with attempt:
                return call()
    except RetryError as error:
        cause = error.last_attempt.exception()
        raise _unavailable(backend, attempts, cause) from cause
    raise AssertionError("unreachable")  # pragma: no cover


async def aretry_transient(call: Callable[[], Awaitable[T]], *, backend: str,
                           is_transient: Callable[[BaseException], bool],
                           attempts: int = 4, max_wait: float = 1.0) -> T:
    """Async :func:`retry_transient`: ``call`` returns an awaitable, waits do not block."""
    try:
        return await call()
    except Exception as error:
        if not is_transient(error):
            raise
        if attempts <= 1:
            raise _unavailable(backend, attempts, error) from error
    await asyncio.sleep(_FIRST_WAIT)
    try:
        async for attempt in AsyncRetrying(**_policy(is_transient, attempts - 1, max_wait)):  # type: ignore[arg-type]
            with attempt:
                return await call()
    except RetryError as error:
        cause = error.last_attempt.exception()
        raise _unavailable(backend, attempts, cause) from cause
    raise AssertionError("unreachable")  # pragma: no cover
