"""A writer process for test_redis_concurrency: 4 threads append batches to one session.

Usage: python redis_writer_process.py URL KEY_PREFIX LAYOUT TTL SESSION PROCESS BATCHES
(TTL 0 means none). Prints nothing; exits non-zero on any error.
"""

from __future__ import annotations

import sys
import threading

from langchain_core.messages import HumanMessage

from chathistory import history_factory

THREADS = 4


def main() -> None:
    url, key_prefix, layout, ttl, session_id, process, batches = sys.argv[1:]
    options: dict[str, object] = {"url": url, "key_prefix": key_prefix, "layout": layout}
    if int(ttl):
        options["ttl"] = int(ttl)
    get_session_history = history_factory("redis", **options)  # one backend, shared by threads
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            history = get_session_history(session_id)
            start.wait()
            for batch in range(int(batches)):
                history.add_messages([HumanMessage(f"p{process}-t{thread}-b{batch}-{part}")
                                      for part in range(2)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    get_session_history.close()
    if errors:
        raise SystemExit(f"writer {process}: {errors!r}")


if __name__ == "__main__":
    main()
