"""The body of each writer process of test_postgres_concurrency.py.

A module of its own, not a test file, so that processes started with "spawn"
can import it by name (the test puts this folder on their sys.path).
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.messages import HumanMessage, message_to_dict

from chathistory import get_backend


def write(options: dict[str, Any], process: int, threads: int, batches: int,
          start: Any, errors: Any) -> None:
    """Create the table (all processes at once), then append from ``threads`` threads."""
    backend = get_backend("postgres", **options)
    start.wait(timeout=60)
    try:
        backend.create_collection()
    except Exception as exc:
        errors.put(f"process {process}: create_collection: {type(exc).__name__}: {exc}")
        return

    def writer(thread: int) -> None:
        name = f"p{process}t{thread}"
        try:
            for batch in range(batches):
                backend.append("shared", [
                    message_to_dict(HumanMessage(f"{name}-b{batch}-{part}"))
                    for part in range(2)
                ])
        except Exception as exc:
            errors.put(f"{name}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=writer, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    backend.close()
