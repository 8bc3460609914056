"""The driver: session files in one directory, each under an ``flock`` while in use.

Every request opens the session's file and holds an ``flock`` on it (shared
to read, exclusive to write), so threads and processes that share the
directory never see a half-written batch. POSIX only. Files have no native
async, so the core runs the async methods in worker threads.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from chathistory import Call, CollectionMissingError, Driver
from chathistory_example.config import JsonLinesConfig
from chathistory_example.errors import is_transient, translate


class SessionFiles(Driver[None, None, None]):
    """One file per session in ``config.directory``. Requests are tuples:
    ``("create",)``, ``("append", session_id, data)``, ``("read", session_id)``,
    ``("remove", session_id)``."""

    def __init__(self, config: JsonLinesConfig) -> None:
        self.directory = config.directory

    def connection(self, call: Call) -> AbstractContextManager[None]:
        return nullcontext()  # each request opens and locks its own file

    def send(self, connection: None, request: tuple[Any, ...]) -> bytes | None:
        match request:
            case ("create",):
                self.create()
            case ("append", str() as session_id, bytes() as data):
                self.append(session_id, data)
            case ("read", str() as session_id):
                return self.read(session_id)
            case ("remove", str() as session_id):
                self.path(session_id).unlink(missing_ok=True)
            case _:
                raise ValueError(f"unknown request {request[0]!r}")
        return None

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        return is_transient(error)  # a failed append is rolled back: safe for writes too

    def translate(self, error: BaseException, call: Call) -> BaseException:
        return translate(error)

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
