"""The pytest plugin (entry point ``pytest11``): the ``chathistory_fake`` fixture.

It imports chathistory only when the fixture is used, so loading the plugin
costs nothing and happens before coverage starts without hiding any lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from chathistory.testing.fake import FakeBackends


@pytest.fixture
def chathistory_fake() -> Iterator[FakeBackends]:
    """Every installed backend name resolves to a shared in-memory fake during the test."""
    from chathistory.testing.fake import fake_backends

    with fake_backends() as fakes:
        yield fakes
