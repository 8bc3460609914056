"""Run a coroutine with blockbuster's detector on, as the contract suite runs every async test."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_without_blocking"]

T = TypeVar("T")


def run_without_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a new event loop with blockbuster's detector on.

    A blocking call made on the loop's thread (``time.sleep``, file or socket
    I/O, acquiring a lock another thread holds) raises
    ``blockbuster.BlockingError``; work a coroutine hands to a worker thread
    (``asyncio.to_thread``) is not the loop's and may block.

    Raises:
        RuntimeError: blockbuster is not installed (``pip install blockbuster``).
    """
    try:
        from blockbuster import blockbuster_ctx
    except ImportError as exc:
        coroutine.close()
        raise RuntimeError(
            "the contract suite checks async twins for blocking calls with blockbuster: "
            "pip install blockbuster (or chathistory's test extra)"
        ) from exc
    with blockbuster_ctx():
        return asyncio.run(coroutine)
