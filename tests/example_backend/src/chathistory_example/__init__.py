"""An example third-party backend, ``jsonl``: one JSON-lines file per session.

It is built only on chathistory's public API, in the shape every backend
package has. Its names load on first use, so importing the package (as the
plugin module does) imports nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chathistory_example.backend import JsonLinesBackend
    from chathistory_example.config import JsonLinesConfig

__all__ = ["JsonLinesBackend", "JsonLinesConfig"]

_MODULES = {"JsonLinesBackend": "backend", "JsonLinesConfig": "config"}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
