"""Shared fixtures for the chathistory-rockset tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chathistory_rockset.backend import RocksetBackend
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


_collections = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[RocksetEmulator]:
    """One emulator per test module, with the default key ``test-key``."""
    with RocksetEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: RocksetEmulator) -> Iterator[RocksetEmulator]:
    """The module's emulator with no latency, no visibility delay and a zeroed request count."""
    server.set_latency(0.0)
    server.set_visibility_delay(0.0)
    server.reset_request_count()
    yield server
    server.set_latency(0.0)
    server.set_visibility_delay(0.0)


@pytest.fixture
def make_backend(emu: RocksetEmulator) -> Iterator[Callable[..., RocksetBackend]]:
    """Builds backends on the emulator, each on a fresh collection unless one is given."""
    built: list[RocksetBackend] = []

    def make(*, create: bool = True, **options: Any) -> RocksetBackend:
        options.setdefault("collection", f"chat_{next(_collections)}")
        if "client" not in options:
            options.setdefault("api_key", "test-key")
            options.setdefault("host", emu.url)
        backend = RocksetBackend.from_options(**options)
        built.append(backend)
        if create:
            backend.create_collection()
        return backend

    yield make
    for backend in built:
        backend.close()
