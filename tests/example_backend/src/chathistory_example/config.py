"""The options of the ``jsonl`` backend."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chathistory import BackendConfig


class JsonLinesConfig(BackendConfig):
    """Where the session files live. Unknown options are an error."""

    directory: Path = Field(description="The directory of session files; created if missing.")
