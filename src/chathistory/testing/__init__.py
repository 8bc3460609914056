"""Test helpers for backend authors and for applications.

- :class:`BackendContract`: subclass it, provide a ``backend`` fixture, get the
  whole conformance suite.
- :func:`fake_backends`: run code that names real backends against the memory
  fake (the ``chathistory_fake`` pytest fixture does the same).
"""

from chathistory.testing.contract import BackendContract
from chathistory.testing.fake import FakeBackends, fake_backends

__all__ = ["BackendContract", "FakeBackends", "fake_backends"]
