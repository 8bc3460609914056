"""Connection churn on Redis: the same writers without kills, with kills, and across a restart.

The phases, writers and checks are ``chathistory.testing.churn``'s (steady,
kills, restart; 4 processes x (4 threads + 2 async tasks), each writer
appending ``--batches`` numbered batches to its own session). This script
brings a PRIVATE ``redis-server`` (a free port, a temporary directory removed
at the end, ``appendonly yes`` with ``appendfsync always`` so that a crash
loses no acknowledged write; never the server of the tests), a key prefix per
phase, and its faults: ``CLIENT KILL ID`` on ``--kill-share`` of the writers'
connections (10% by default, at least one) every 20-100 ms, and a ``SIGKILL``
with a restart 3 s later (it reloads its append-only file). The pool's
``pool_timeout`` is 10 s.

By default steady and kills run twice, alternately, so that the changing load
of a shared machine falls on both; the ratio is of their mean times.

    .venv/bin/python backends/redis/benchmarks/bench_churn.py [--batches 1000]

Each phase gives up after ``--deadline`` seconds (and says so).
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import redis

from chathistory import get_backend
from chathistory.testing import churn

TIMEOUT = 10.0  # the pool's timeout, given explicitly
NAME = "chathistory-churn"  # the writers' connections' name, for the killer


class PrivateServer:
    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("bench_churn needs redis-server")
        self.directory = Path(tempfile.mkdtemp(prefix="chathistory-churn-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.killer: redis.Redis | None = None

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--maxclients", "1000",
             "--logfile", str(self.directory / "log")])
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with self.admin() as admin:
                    admin.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise SystemExit("the private redis-server did not start")

    def crash(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def prepare(self, target: str) -> None:
        """Nothing to create: a session's list is made by its first append."""

    def kill_connections(self, share: float) -> int:
        self.killer = self.killer or self.admin()
        writers = [client["id"] for client in self.killer.client_list(_type="normal")
                   if client.get("name") == NAME]
        if not writers:
            return 0
        chosen = [id_ for id_ in writers if random.random() < share] or [random.choice(writers)]
        pipe = self.killer.pipeline(transaction=False)
        for id_ in chosen:
            pipe.execute_command("CLIENT", "KILL", "ID", id_)  # type: ignore[no-untyped-call]
        return sum(1 for reply in pipe.execute(raise_on_error=False)
                   if reply is True or reply == 1 or reply == "OK")

    def stored(self, target: str, sessions: Sequence[str]) -> Mapping[str, Sequence[str]]:
        reader: Any = get_backend("redis", url=self.url, key_prefix=target)
        try:
            return {session: [record["data"]["content"] for record in reader.fetch(session)]
                    for session in sessions}
        finally:
            reader.close()

    def remove(self) -> None:
        if self.killer is not None:
            self.killer.close()
        self.crash()
        shutil.rmtree(self.directory, ignore_errors=True)


def open_store(url: str, prefix: str) -> churn.ChurnStore:
    """A writer process's backend, its connections named for the killer."""
    logging.getLogger("chathistory_redis").setLevel(logging.ERROR)  # a retry each kill
    store: churn.ChurnStore = get_backend("redis", url=f"{url}?client_name={NAME}",
                                    key_prefix=prefix, pool_timeout=TIMEOUT)
    return store


def main() -> None:
    options = churn.churn_parser(__doc__.splitlines()[0],
                                 phases="steady,kills,steady,kills,restart").parse_args()
    with churn.running(PrivateServer()) as server:
        churn.run_churn(server, [churn.Writers(partial(open_store, server.url))], options,
                        churn.ChurnSettings(timeout=TIMEOUT),
                        f"private redis-server on port {server.port}")


if __name__ == "__main__":
    main()
