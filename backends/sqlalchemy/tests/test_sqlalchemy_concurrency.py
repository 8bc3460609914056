"""4 processes x 4 threads append to one session on MariaDB: all or nothing, in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chathistory_sqlalchemy import SQLAlchemyBackend

PROCESSES = 4
WRITERS = Path(__file__).with_name("sqlalchemy_writers.py")


def test_batches_stay_whole_contiguous_and_in_each_writers_order(
    mysql_url: str, mysql_table: str, tmp_path: Path
) -> None:
    sys.path.insert(0, str(WRITERS.parent))
    try:
        from sqlalchemy_writers import BATCHES, THREADS, batch
    finally:
        sys.path.remove(str(WRITERS.parent))
    backend = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    backend.create_collection()
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, str(WRITERS), mysql_url, mysql_table,
                                   "shared", str(number), str(go)])
                 for number in range(PROCESSES)]
    go.touch()
    assert [process.wait(timeout=240) for process in processes] == [0] * PROCESSES

    contents = [record["data"]["content"] for record in backend.fetch("shared")]
    writers = [f"p{p}t{t}" for p in range(PROCESSES) for t in range(THREADS)]
    expected = {writer: [record["data"]["content"] for number in range(BATCHES)
                         for record in batch(writer, number)] for writer in writers}
    assert len(contents) == len(set(contents)) == sum(map(len, expected.values()))
    for writer in writers:  # nothing lost, each writer's batches in its order
        assert [c for c in contents if c.startswith(f"{writer}-")] == expected[writer]
    position = 0
    while position < len(contents):  # every batch is contiguous: no other row inside it
        writer, number, _ = contents[position].split("-")
        size = 1 + int(number[1:]) % 4
        assert contents[position:position + size] == [
            f"{writer}-{number}-{part}" for part in range(size)], f"batch split at {position}"
        position += size
    backend.close()
