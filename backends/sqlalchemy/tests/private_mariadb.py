"""A private MariaDB server, for the tests and the benchmarks that need one of their own.

``mariadb-install-db`` and ``mariadbd`` in a temporary directory, root without a
password on a free port of 127.0.0.1, never the server the other tests use.
test_sqlalchemy_trigger.py starts one with binary logging; the benchmarks
(bench_churn.py, bench_catalog.py) add this directory to ``sys.path`` and
import it from here.

    with PrivateServer("test", ("--innodb-buffer-pool-size=32M",), parent=tmp_path) as server:
        connection = server.connect()
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql  # type: ignore[import-untyped]  # as client.py: no stubs in the venv

__all__ = ["PrivateServer"]


def _mariadbd() -> str | None:
    return shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/sbin")


class PrivateServer:
    """A mariadbd of its own: root without a password on 127.0.0.1:<free port>, with
    ``settings`` (mariadbd options) and a database ``database``, in a temporary directory
    (under ``parent``, by default the system's) that :meth:`remove` deletes.

    Raises ``SystemExit`` when the server's programs are missing (a test skips on it).
    As a context manager: started on entry, removed on exit however the block ends."""

    def __init__(self, database: str = "test", settings: Sequence[str] = (), *,
                 parent: Path | None = None) -> None:
        if _mariadbd() is None or shutil.which("mariadb-install-db") is None:
            raise SystemExit("a private server needs mariadbd and mariadb-install-db")
        self.database, self.settings = database, settings
        self.directory = Path(tempfile.mkdtemp(prefix="chathistory-mariadb-", dir=parent))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"
        self.process: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                            "--auth-root-authentication-method=normal", "--user=root",
                            "--skip-test-db"], check=True, capture_output=True, timeout=120)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    @property
    def data(self) -> str:
        return str(self.directory / "data")

    def connect(self, database: str | None = None) -> Any:
        """A PyMySQL connection (autocommit) to ``database`` (by default the server's own)."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                               database=database or self.database, autocommit=True,
                               charset="utf8mb4")

    def start(self) -> None:
        """Start mariadbd (again, after :meth:`crash`) and return once it answers."""
        mariadbd = _mariadbd()
        assert mariadbd is not None
        # Its temporary tables in its own directory too, never the system's /tmp.
        self.process = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
             f"--socket={self.directory / 'socket'}", "--bind-address=127.0.0.1",
             "--user=root", f"--log-error={self.directory / 'error.log'}",
             f"--tmpdir={self.directory}", "--skip-log-bin", *self.settings],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # Ctrl-C reaches the script alone, which removes it
        deadline = time.monotonic() + 120
        while True:
            try:
                admin = pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                                        autocommit=True)
                admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                                       "CHARACTER SET utf8mb4")
                admin.close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"the private server did not start: see "
                                     f"{self.directory / 'error.log'}") from None
                time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL the server, as a crash would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def remove(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateServer:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.remove()
