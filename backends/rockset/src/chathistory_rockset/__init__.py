"""The Rockset backend for chathistory (``backend="rockset"``).

Importing this package is cheap: neither the backend nor the ``rockset`` SDK is
loaded until used. ``from chathistory_rockset import RocksetBackend`` loads the
backend module (still not the SDK, which loads when a backend is built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chathistory_rockset.backend import RocksetBackend
    from chathistory_rockset.config import RocksetConfig

__all__ = ["RocksetBackend", "RocksetConfig"]


def __getattr__(name: str) -> Any:
    if name == "RocksetBackend":
        from chathistory_rockset.backend import RocksetBackend

        return RocksetBackend
    if name == "RocksetConfig":
        from chathistory_rockset.config import RocksetConfig

        return RocksetConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
