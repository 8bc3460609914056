"""One writer process: THREADS threads appending BATCHES batches each to one session.

    python sqlalchemy_writers.py <url> <table> <session> <process-number> <go-file>

Every thread waits for <go-file> to exist, so all processes start together.
Batch b of writer w holds ``1 + b % 4`` messages ``w-b<b>-<k>``.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from chathistory_sqlalchemy import SQLAlchemyBackend
from langchain_core.messages import HumanMessage, message_to_dict

THREADS, BATCHES = 4, 25


def batch(writer: str, number: int) -> list[dict[str, object]]:
    return [message_to_dict(HumanMessage(f"{writer}-b{number}-{part}"))
            for part in range(1 + number % 4)]


def main() -> None:
    url, table, session, process, go = sys.argv[1:6]
    backend = SQLAlchemyBackend.from_options(url=url, table=table, pool_size=THREADS)
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        writer = f"p{process}t{thread}"
        try:
            for number in range(BATCHES):
                backend.append(session, batch(writer, number))
        except BaseException as exc:
            errors.append(exc)

    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.close()
    if errors:
        raise SystemExit(f"writer {process} failed: {errors!r}")


if __name__ == "__main__":
    main()
