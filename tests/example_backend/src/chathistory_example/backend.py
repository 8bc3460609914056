"""The ``jsonl`` backend: one file per session, one JSON record per line."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from chathistory import BaseBackend, decode_record, encode_record, retry_transient
from chathistory_example.client import SessionFiles
from chathistory_example.config import JsonLinesConfig
from chathistory_example.errors import is_transient, translate

T = TypeVar("T")


class JsonLinesBackend(BaseBackend):
    """Stores each session in a JSON-lines file of its own.

    Example::

        backend = JsonLinesBackend.from_options(directory="histories/")
    """

    name = "jsonl"
    Config = JsonLinesConfig
    config: JsonLinesConfig

    def __init__(self, config: JsonLinesConfig) -> None:
        super().__init__(config)
        self.files = SessionFiles(config)

    def _run(self, call: Callable[[], T]) -> T:
        """Run one file operation on the one retry path, its errors translated."""
        return retry_transient(call, backend=self.name, is_transient=is_transient,
                               translate=translate)

    def create_collection(self) -> None:
        self._run(self.files.create)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        # Encoded before any I/O: a record JSON cannot hold is refused, nothing written.
        data = "".join(encode_record(record) + "\n" for record in records).encode()
        if data:
            self._run(lambda: self.files.append(session_id, data))

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        # Split on "\n" only: JSON text may hold U+2028, which splitlines() splits on.
        lines = self._run(lambda: self.files.read(session_id)).decode().split("\n")[:-1]
        if limit is not None:
            lines = lines[max(0, len(lines) - limit):]
        return [decode_record(line) for line in lines]

    def clear(self, session_id: str) -> None:
        self._run(lambda: self.files.remove(session_id))
