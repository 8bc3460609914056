"""The pluggy markers and the hooks a chathistory plugin can implement."""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "chathistory"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def chathistory_backend() -> Any:
    """Return the backend class this plugin provides.

    The plugin is registered under its entry-point name in the group
    ``chathistory.backends``, and that name is the backend's name. The hook is
    called only when the backend is chosen, so import heavy SDKs inside it.
    The class must satisfy :class:`chathistory.Backend` and take an instance
    of its nested ``Config`` model.
    """
