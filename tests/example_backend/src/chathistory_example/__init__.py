"""An example third-party backend, ``jsonl``: one JSON-lines file per session.

It is built only on chathistory's public API, in the shape every backend
package has. Its names load on first use, so importing the package (as the
plugin module does) imports nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory.lazy import lazy_exports

if TYPE_CHECKING:
    from chathistory_example.backend import JsonLinesBackend
    from chathistory_example.config import JsonLinesConfig

__all__ = ["JsonLinesBackend", "JsonLinesConfig"]

__getattr__, __dir__ = lazy_exports(
    __name__, {"JsonLinesBackend": "backend", "JsonLinesConfig": "config"})
