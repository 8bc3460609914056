"""chathistory-rockset: the ``rockset`` backend of chathistory (the official ``rockset`` SDK).

Use it by name, ``ChatHistory("s", backend="rockset", ...)``, or build it:
``RocksetBackend.from_options(...)``. Importing the package (as the plugin loader
does) loads neither the backend nor the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory_rockset.backend import RocksetBackend
    from chathistory_rockset.config import RocksetConfig

__all__ = ["RocksetBackend", "RocksetConfig"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"RocksetBackend": "backend", "RocksetConfig": "config"})
