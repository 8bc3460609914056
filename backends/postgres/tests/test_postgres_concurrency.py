"""Four processes of four threads start at once, create the table and append to one session."""

from __future__ import annotations

import multiprocessing
import queue
import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chathistory_postgres.sql import SCHEMA_VERSION
from psycopg import sql

from chathistory import get_backend

PROCESSES, THREADS, BATCHES = 4, 4, 10


def test_processes_and_threads_lose_nothing_and_keep_each_writers_order(
    postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch,
    admin: psycopg.Connection[Any]
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import postgres_writers

    # A schema that does not exist yet: every process races to create it and the table.
    schema = f"{postgres_schema}_race_{secrets.token_hex(2)}"
    options = {"conninfo": postgres_url, "schema": schema, "table": "shared_history",
               "max_size": THREADS}
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    errors = context.Queue()
    processes = [
        context.Process(target=postgres_writers.write,
                        args=(options, process, THREADS, BATCHES, start, errors))
        for process in range(PROCESSES)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        reported = []
        while True:
            try:
                reported.append(errors.get(timeout=0.1))
            except queue.Empty:
                break
        assert reported == []
        assert [process.exitcode for process in processes] == [0] * PROCESSES

        backend = get_backend("postgres", **options)
        contents = [record["data"]["content"] for record in backend.fetch("shared")]
        backend.close()
        assert len(contents) == PROCESSES * THREADS * BATCHES * 2
        assert len(set(contents)) == len(contents), "a message was stored twice"
        for process in range(PROCESSES):
            for thread in range(THREADS):
                name = f"p{process}t{thread}"
                assert [text for text in contents if text.startswith(f"{name}-")] == [
                    f"{name}-b{batch}-{part}" for batch in range(BATCHES) for part in range(2)
                ], f"writer {name} lost its order"
        for start_index in range(0, len(contents), 2):
            first, second = contents[start_index:start_index + 2]
            assert first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0], "a batch was split"
        row = admin.execute("SELECT value FROM " + sql.Identifier(
            schema, "shared_history_meta").as_string() + " WHERE key = 'schema_version'"
        ).fetchone()
        assert row == (str(SCHEMA_VERSION),)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
