import hashlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chathistory import BackendConfig, BaseBackend, decode_record, encode_record


class JsonLinesBackend(BaseBackend):
    """One file per session, one JSON record per line."""

    name = "jsonl"

    class Config(BackendConfig):
        directory: Path

    config: Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._lock = threading.Lock()

    def _file(self, session_id: str) -> Path:
        # Session ids are values: hash them rather than trust them in a path.
        return self.config.directory / (hashlib.sha256(session_id.encode()).hexdigest() + ".jsonl")

    def create_collection(self) -> None:
        self.config.directory.mkdir(parents=True, exist_ok=True)

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        lines = "".join(encode_record(record) + "\n" for record in records)
        with self._lock, self._file(session_id).open("a", encoding="utf-8") as file:
            file.write(lines)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                text = self._file(session_id).read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
        # Not splitlines(): JSON text may hold U+2028, which it would split on.
        lines = text.split("\n")[:-1]
        if limit is not None:
            lines = lines[len(lines) - limit:] if limit else []
        return [decode_record(line) for line in lines]

    def clear(self, session_id: str) -> None:
        with self._lock:
            self._file(session_id).unlink(missing_ok=True)
