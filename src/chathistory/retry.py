"""Retry transient failures with bounded backoff, then raise BackendUnavailableError.

Backends decide what is transient (a dropped connection, a 503) and whether a
call is safe to repeat; these helpers only run the loop.
"""

from __future__ import annotations

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


def _policy(is_transient: Callable[[BaseException], bool], attempts: int, max_wait: float
            ) -> dict[str, object]:
    return {
        "stop": stop_after_attempt(attempts),
        "wait": wait_exponential_jitter(multiplier=0.05, max=max_wait, jitter=0.05),
        "retry": retry_if_exception(is_transient),
        "reraise": False,
    }


def _unavailable(backend: str, attempts: int, error: RetryError) -> BackendUnavailableError:
    cause = error.last_attempt.exception()
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
    try:
        for attempt in Retrying(**_policy(is_transient, attempts, max_wait)):  # type: ignore[arg-type]
            with attempt:
                return call()
    except RetryError as error:
        raise _unavailable(backend, attempts, error) from error.last_attempt.exception()
    raise AssertionError("unreachable")  # pragma: no cover


async def aretry_transient(call: Callable[[], Awaitable[T]], *, backend: str,
                           is_transient: Callable[[BaseException], bool],
                           attempts: int = 4, max_wait: float = 1.0) -> T:
    """Async :func:`retry_transient`: ``call`` returns an awaitable, waits do not block."""
    try:
        async for attempt in AsyncRetrying(**_policy(is_transient, attempts, max_wait)):  # type: ignore[arg-type]
            with attempt:
                return await call()
    except RetryError as error:
        raise _unavailable(backend, attempts, error) from error.last_attempt.exception()
    raise AssertionError("unreachable")  # pragma: no cover
