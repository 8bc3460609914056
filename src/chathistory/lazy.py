"""Public names that load their module on first use (PEP 562 module ``__getattr__``).

The core uses it, and so may a backend package, so that importing the package
(as the plugin loader does) imports neither the backend nor its driver::

    # chathistory_mystore/__init__.py
    from typing import TYPE_CHECKING

    from chathistory.lazy import lazy_exports

    if TYPE_CHECKING:
        from chathistory_mystore.backend import MyStoreBackend
        from chathistory_mystore.config import MyStoreConfig

    __all__ = ["MyStoreBackend", "MyStoreConfig"]
    __getattr__, __dir__ = lazy_exports(
        __name__, {"MyStoreBackend": "backend", "MyStoreConfig": "config"})
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose ``modules`` map each
    public name to the submodule that defines it. A name, once loaded, is kept."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{modules[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(modules)

    return __getattr__, __dir__
