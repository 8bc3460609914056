"""Test helpers for backend authors and for applications.

- :class:`BackendContract`: subclass it, provide a ``backend`` fixture (and
  ``make_session_id`` where the store constrains ids), get the whole
  conformance suite.
- :func:`sample_messages`, :func:`numbered_records`, :data:`HOSTILE_SESSION_IDS`:
  the data the suite uses, for a backend's own tests.
- :func:`fake_backends`: run code that names real backends against the memory
  fake (the ``chathistory_fake`` pytest fixture does the same).
- :func:`wait_until`, :func:`await_until`: poll until another thread, process
  or server has done something, failing with what was awaited.

Names load on first use, so the pytest plugin that imports this package
imports neither langchain-core nor the backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory.testing.blocking import run_without_blocking
    from chathistory.testing.contract import BackendContract, MakeSessionId
    from chathistory.testing.fake import FakeBackends, fake_backends
    from chathistory.testing.samples import (
        HOSTILE_SESSION_IDS,
        numbered_records,
        sample_messages,
    )
    from chathistory.testing.waiting import await_until, wait_until

__all__ = [
    "HOSTILE_SESSION_IDS",
    "BackendContract",
    "FakeBackends",
    "MakeSessionId",
    "await_until",
    "fake_backends",
    "numbered_records",
    "run_without_blocking",
    "sample_messages",
    "wait_until",
]

_MODULES = {
    "BackendContract": "contract",
    "MakeSessionId": "contract",
    "run_without_blocking": "blocking",
    "FakeBackends": "fake",
    "fake_backends": "fake",
    "HOSTILE_SESSION_IDS": "samples",
    "numbered_records": "samples",
    "sample_messages": "samples",
    "await_until": "waiting",
    "wait_until": "waiting",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
