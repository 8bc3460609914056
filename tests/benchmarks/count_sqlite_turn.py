"""Instructions per SQLite turn, ours against raw sqlite3, counted by callgrind.

    .venv/bin/python tests/benchmarks/count_sqlite_turn.py [--turns 250] [--contenders ...]

Runs each contender of bench_sqlite's turn (build the session's history from a
factory, read it, append two messages; the sessions grow alike, as bench_sqlite's
``pair`` numbers them) alone in a process of its own under callgrind (see
callgrind.py): ``SESSIONS`` turns to warm up, then ``--turns`` turns counted.
Instruction counts are reproducible where times are not (bench_sqlite's turn
swings with the machine's load); they do not see cache misses, which is what a
contender running more distinct code pays besides.

Contenders: "ours" (ChatHistory from history_factory, as bench_sqlite), "raw"
(bench_sqlite's RawSqlite on chathistory's schema), "backend" (the backend's
fetch and append, no ChatHistory: ours - backend is the history's layer). (Not the
async methods: on SQLite they run in worker threads, which callgrind counts apart.)
"""

from __future__ import annotations

import functools
import gc
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_sqlite as bench
import callgrind
from langchain_core.messages import message_to_dict, messages_from_dict

from chathistory import history_factory
from chathistory.backend import ensure_collection

CONTENDERS = ("ours", "raw", "backend")


def turn_of(contender: str, directory: Path) -> tuple[Callable[[int], None], Callable[[], None]]:
    """The turn of ``contender`` (given the step's number) and what closes its store."""
    path = str(directory / f"{contender}.sqlite3")
    if contender == "raw":
        raw = bench.RawSqlite(path)

        def raw_turn(index: int) -> None:
            session_id, messages = bench.pair(index)
            raw.read(session_id)
            raw.write(session_id, messages)

        return raw_turn, raw.close
    factory = history_factory("sqlite", path=path)
    backend = factory.backend
    ensure_collection(backend)

    def ours(index: int) -> None:
        session_id, messages = bench.pair(index)
        history = factory(session_id)
        history.messages  # noqa: B018 - reading is the point
        history.add_messages(messages)

    def backend_turn(index: int) -> None:
        session_id, messages = bench.pair(index)
        messages_from_dict(backend.fetch(session_id))
        backend.append(session_id, [message_to_dict(message) for message in messages])

    return (ours if contender == "ours" else backend_turn), factory.close


def run_turns(contender: str, turns: int) -> None:
    """``SESSIONS`` turns of ``contender``, then ``turns`` more inside ``functools.reduce``
    (the ones counted)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with tempfile.TemporaryDirectory() as name:
        turn, close = turn_of(contender, Path(name))
        for index in range(bench.SESSIONS):
            turn(index)
        gc.collect()
        gc.freeze()

        def step(_: None, index: int) -> None:
            turn(index)

        functools.reduce(step, range(bench.SESSIONS, bench.SESSIONS + turns), None)
        close()


def main() -> None:
    callgrind.main(__file__, __doc__.splitlines()[0], CONTENDERS, 250, run_turns,
                   [("ours", "raw"), ("ours", "backend"), ("backend", "raw")])


if __name__ == "__main__":
    main()
