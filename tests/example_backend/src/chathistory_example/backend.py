"""The ``jsonl`` backend: one file per session, one JSON record per line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chathistory import BaseBackend, Operation, Runner, decode_record, encode_record, operation
from chathistory_example.client import SessionFiles
from chathistory_example.config import JsonLinesConfig


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
        self.runner = Runner(self, self.files)

    @operation(write=True)
    def create_collection(self) -> Operation[None]:
        yield ("create",)

    @operation(write=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        # Encoded before any I/O: a record JSON cannot hold is refused, nothing written.
        data = "".join(encode_record(record) + "\n" for record in records).encode()
        if data:
            yield ("append", session_id, data)

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        stored: bytes = yield ("read", session_id)
        # Split on "\n" only: JSON text may hold U+2028, which splitlines() splits on.
        lines = stored.decode().split("\n")[:-1]
        if limit is not None:
            lines = lines[max(0, len(lines) - limit):]
        return [decode_record(line) for line in lines]

    @operation(write=True)
    def clear(self, session_id: str) -> Operation[None]:
        yield ("remove", session_id)
