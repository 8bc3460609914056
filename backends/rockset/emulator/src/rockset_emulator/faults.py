"""Fault injection: added latency, failed requests, and dropped write connections."""

from __future__ import annotations

import threading
from collections import deque
from enum import Enum


class Drop(Enum):
    """How a write request's connection is dropped."""

    BEFORE_APPLY = "before"  # the write never happens
    AFTER_APPLY = "after"  # the write happens, the client never hears of it


class Faults:
    """Queues of pending faults, consumed one per request, in the order they were set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency = 0.0
        self._failures: deque[int] = deque()
        self._drops: deque[Drop] = deque()

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = seconds

    def fail_next(self, n: int, status: int) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (4xx or 5xx), not {status}")
        with self._lock:
            self._failures.extend([status] * n)

    def drop_next(self, n: int, *, after_apply: bool) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._drops.extend([Drop.AFTER_APPLY if after_apply else Drop.BEFORE_APPLY] * n)

    def take_failure(self) -> int | None:
        """The status to fail this request with, if a failure is queued."""
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def take_drop(self) -> Drop | None:
        """How to drop this write request, if a drop is queued."""
        with self._lock:
            return self._drops.popleft() if self._drops else None

    def reset(self) -> None:
        with self._lock:
            self._latency = 0.0
            self._failures.clear()
            self._drops.clear()
