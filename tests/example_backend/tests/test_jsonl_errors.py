"""File-system failures reach the application as chathistory errors, with nothing half-written."""

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from chathistory_example import JsonLinesBackend
from chathistory_example.errors import is_transient, translate

from chathistory import BackendUnavailableError, PermissionDeniedError
from chathistory.testing import numbered_records


def test_a_missing_directory_is_an_unavailable_error(tmp_path: Path) -> None:
    backend = JsonLinesBackend.from_options(directory=tmp_path / "never-created")
    with pytest.raises(BackendUnavailableError, match="No such file or directory"):
        backend.append("s", numbered_records(1))


def test_a_file_where_the_directory_should_be_is_an_unavailable_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    backend = JsonLinesBackend.from_options(directory=tmp_path / "taken")
    with pytest.raises(BackendUnavailableError, match="File exists"):
        backend.create_collection()


def test_refused_access_is_a_permission_error_and_never_retried() -> None:
    refused = OSError(errno.EACCES, "Permission denied", "/histories/x.jsonl")
    assert not is_transient(refused)
    assert isinstance(translate(refused), PermissionDeniedError)
    assert is_transient(OSError(errno.ESTALE, "Stale file handle"))


FULL_DISK = """
import resource, signal, sys
from chathistory import BackendUnavailableError
from chathistory_example import JsonLinesBackend
from chathistory.testing import numbered_records

backend = JsonLinesBackend.from_options(directory=sys.argv[1])
backend.create_collection()
backend.append("s", numbered_records(2))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))   # writes past 4 KiB fail: EFBIG
try:
    backend.append("s", numbered_records(200, prefix="lost"))
except BackendUnavailableError as error:
    print(error)
print(len(backend.fetch("s")))
"""


def test_a_write_the_disk_refuses_leaves_no_partial_line(tmp_path: Path) -> None:
    output = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    assert output[0].startswith("backend 'jsonl' cannot use") and "File too large" in output[0]
    assert output[1] == "2"
