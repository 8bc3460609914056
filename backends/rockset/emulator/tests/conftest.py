"""Fixtures of the emulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rockset_emulator import RocksetEmulator

# Noise from third parties that must not fail a run: urllib3 1.26 (pinned by the rockset
# SDK) deprecates HTTPResponse.getheader, and langchain-community announces its sunset.
_WARNING_FILTERS = (
    "ignore:.*getheader.*:DeprecationWarning",
    "ignore:.*langchain-community.*is being sunset:DeprecationWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in _WARNING_FILTERS:
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture
def rockset_emulator() -> Iterator[RocksetEmulator]:
    """A running emulator (no delays, no faults) on an ephemeral 127.0.0.1 port.

    Point the real SDK at it with ``rockset_emulator.client()``.
    """
    with RocksetEmulator(api_key="test-key") as emulator:
        yield emulator
