"""Concurrent writers: 4 processes x 4 threads append to one session; nothing lost or doubled."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from chathistory_redis import RedisBackend

WRITER = Path(__file__).with_name("redis_writer_process.py")
PROCESSES, THREADS, BATCHES = 4, 4, 25


@pytest.mark.parametrize(("layout", "ttl"), [("chathistory", 600), ("langchain_community", 0)])
def test_processes_and_threads_append_to_one_session(
    make_backend: Callable[..., RedisBackend], redis_url: str, layout: str, ttl: int
) -> None:
    backend = make_backend(layout=layout)
    key_prefix = backend.config.effective_key_prefix
    writers = [
        subprocess.Popen([sys.executable, str(WRITER), redis_url, key_prefix, layout, str(ttl),
                          "shared {session}:1", str(process), str(BATCHES)],
                         stderr=subprocess.PIPE, text=True)
        for process in range(PROCESSES)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0, stderr

    contents = [record["data"]["content"] for record in backend.fetch("shared {session}:1")]
    assert len(contents) == PROCESSES * THREADS * BATCHES * 2
    assert len(set(contents)) == len(contents), "a message was stored twice"
    for process in range(PROCESSES):
        for thread in range(THREADS):
            own = [text for text in contents if text.startswith(f"p{process}-t{thread}-")]
            assert own == [f"p{process}-t{thread}-b{batch}-{part}"
                           for batch in range(BATCHES) for part in range(2)]
    for start in range(0, len(contents), 2):
        first, second = contents[start:start + 2]
        assert first.endswith("-0") and second == first[:-1] + "1", "a batch was split"
