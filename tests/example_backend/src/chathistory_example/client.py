"""The session files: their directory, their paths, their locks.

Every call opens the session's file and holds an ``flock`` on it (shared to
read, exclusive to write), so threads and processes that share the
directory never see a half-written batch. POSIX only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chathistory import CollectionMissingError
from chathistory_example.config import JsonLinesConfig


class SessionFiles:
    """One file per session in ``config.directory``."""

    def __init__(self, config: JsonLinesConfig) -> None:
        self.directory = config.directory

    def create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, session_id: str) -> Path:
        # Session ids are values: hashed, never trusted in a path.
        return self.directory / f"{hashlib.sha256(session_id.encode()).hexdigest()}.jsonl"

    @contextmanager
    def locked(self, session_id: str, flags: int, lock: int) -> Iterator[int]:
        """The session file's descriptor, opened with ``flags`` and locked with ``lock``."""
        descriptor = os.open(self.path(session_id), flags | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, lock)
            yield descriptor
        finally:
            os.close(descriptor)  # releases the lock

    def append(self, session_id: str, data: bytes) -> None:
        """Write ``data`` at the end of the file, all of it or none of it."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        with self.locked(session_id, flags, fcntl.LOCK_EX) as descriptor:
            size = os.fstat(descriptor).st_size
            try:
                remaining = memoryview(data)
                while remaining:
                    remaining = remaining[os.write(descriptor, remaining):]
            except OSError:
                os.ftruncate(descriptor, size)  # a full disk leaves no partial line
                raise

    def read(self, session_id: str) -> bytes:
        """The whole file; empty when the session has none.

        Reading creates nothing: a directory that does not exist (a misspelt
        path) is a CollectionMissingError, not an empty session.
        """
        try:
            with (self.locked(session_id, os.O_RDONLY, fcntl.LOCK_SH) as descriptor,
                  open(descriptor, "rb", closefd=False) as file):
                return file.read()
        except FileNotFoundError:
            if not self.directory.is_dir():
                raise CollectionMissingError(
                    f"backend 'jsonl': no directory {str(self.directory)!r} (nothing was "
                    "created; check the directory option)") from None
            return b""

    def remove(self, session_id: str) -> None:
        self.path(session_id).unlink(missing_ok=True)
