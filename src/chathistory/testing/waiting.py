"""Waiting in tests for something another thread, process or server does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["await_until", "wait_until"]


def wait_until(condition: Callable[[], object], what: str, seconds: float = 15.0,
               every: float = 0.01) -> None:
    """Poll ``condition`` every ``every`` seconds until it is true.

    Args:
        condition: Checked until it returns something true.
        what: What is awaited, for the failure's message ("the replica is promoted").
        seconds: How long to wait at most: a bound for a stuck test, never a
            measure of speed (tests assert no upper bound on elapsed time).
        every: Seconds between two checks.

    Raises:
        AssertionError: ``condition`` was still false after ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting until {what}")
        time.sleep(every)


async def await_until(condition: Callable[[], object], what: str, seconds: float = 15.0,
                      every: float = 0.01) -> None:
    """:func:`wait_until` in a coroutine: the event loop runs while it waits."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting until {what}")
        await asyncio.sleep(every)
