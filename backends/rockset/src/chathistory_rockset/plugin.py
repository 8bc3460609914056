"""The ``chathistory.backends`` entry point ``rockset``: cheap to import, no SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory import hookimpl

if TYPE_CHECKING:
    from chathistory_rockset.backend import RocksetBackend


@hookimpl
def chathistory_backend() -> type[RocksetBackend]:
    """The Rockset backend class (its module imports the SDK only when a backend is built)."""
    from chathistory_rockset.backend import RocksetBackend

    return RocksetBackend
