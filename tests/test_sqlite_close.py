"""close() while other threads are mid-call must not crash the interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import asyncio, sys, threading
    from chathistory.backends.sqlite import SqliteBackend

    backend = SqliteBackend(SqliteBackend.Config(path=sys.argv[1]))
    backend.create_collection()
    records = [{"type": "human", "data": {"content": "hi", "type": "human"}}]
    stop = threading.Event()

    def write(name):
        while not stop.is_set():
            backend.append(name, records)
            backend.fetch(name, limit=2)

    threads = [threading.Thread(target=write, args=(f"s{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for round in range(200):
        backend.close() if round % 2 else asyncio.run(backend.aclose())
    stop.set()
    for thread in threads:
        thread.join()
    backend.close()
    print("survived", len(backend.fetch("s0")) > 0)
""")


def test_closing_while_other_threads_write_never_crashes(tmp_path: Path) -> None:
    for attempt in range(3):
        result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"{attempt}.db")],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
        assert result.stdout.strip() == "survived True"
