"""The entry point: cheap to import; the backend loads when it is chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chathistory import hookimpl

if TYPE_CHECKING:
    from chathistory_example.backend import JsonLinesBackend


@hookimpl
def chathistory_backend() -> type[JsonLinesBackend]:
    from chathistory_example.backend import JsonLinesBackend

    return JsonLinesBackend
