"""Swap named backends for the memory fake, keeping their option validation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from chathistory.backend import Backend, BackendConfig
from chathistory.backends.memory import MemoryBackend
from chathistory.registry import Registry, default_registry

__all__ = ["FakeBackends", "fake_backends"]


class FakeBackends:
    """The memory backends standing in for real ones, one per backend name.

    Every ``get_backend(name, ...)`` during the swap returns the same
    :class:`MemoryBackend` for that name, so data written through one history
    is read through the next, as with a real store.
    """

    def __init__(self) -> None:
        self._backends: dict[str, MemoryBackend] = {}
        self._lock = threading.Lock()

    def _substitute(self, name: str, config: BackendConfig) -> Backend:
        return self[name]

    def __getitem__(self, name: str) -> MemoryBackend:
        """The fake for ``name`` (created on first use), to inspect or inject faults into."""
        with self._lock:
            if name not in self._backends:
                self._backends[name] = MemoryBackend()
            return self._backends[name]

    def __contains__(self, name: object) -> bool:
        return name in self._backends


@contextmanager
def fake_backends(*names: str, registry: Registry = default_registry) -> Iterator[FakeBackends]:
    """Within the block, backends ``names`` (default: every installed one) are memory fakes.

    Options are still validated against the real backend's ``Config``, so a
    misspelt option still fails, and a name no installed backend has is a
    :class:`~chathistory.errors.BackendNotFoundError`. Example::

        with fake_backends("rockset") as fakes:
            history = ChatHistory("s1", backend="rockset", collection="chat", api_key="k")
            history.add_user_message("hi")
            assert fakes["rockset"].calls["append"] == 1
    """
    installed = [info.name for info in registry.available()]
    for name in names:
        if name not in installed:
            # A misspelt name would swap nothing and leave the real store to the test.
            registry.backend_class(name)  # raises BackendNotFoundError, naming the closest
    chosen = list(names) or installed
    fakes = FakeBackends()
    with registry.substituted(chosen, fakes._substitute):
        yield fakes
