"""Fixtures of the emulator's own tests (the repository's pytest settings filter the
DeprecationWarnings of urllib3 1.26 and langchain-community)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rockset_emulator import RocksetEmulator


@pytest.fixture
def rockset_emulator() -> Iterator[RocksetEmulator]:
    """A running emulator (no delays, no faults) on an ephemeral 127.0.0.1 port.

    Point the real SDK at it with ``rockset_emulator.client()``.
    """
    with RocksetEmulator(api_key="test-key") as emulator:
        yield emulator
