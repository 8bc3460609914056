"""Instructions per turn under callgrind, for the count_*.py benchmarks.

A counting script runs each contender in a child process of its own (``script
--child CONTENDER TURNS``), which makes its turns inside one call of
``functools.reduce``: callgrind counts only that call (``--toggle-collect``),
in the main thread, with hash randomization off (``PYTHONHASHSEED=0``).
Instruction counts are reproducible where times are not; they do not see
cache misses.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def instructions(script: str, contender: str, turns: int) -> float:
    """The instructions of one turn of ``contender`` in ``script``, over ``turns`` turns."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        "--collect-atstart=no", "--toggle-collect=functools_reduce",
                        f"--callgrind-out-file={out}",
                        sys.executable, script, "--child", contender, str(turns)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        text = Path(f"{out}-01").read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    assert found, "no totals in callgrind's output"
    return int(found.group(1)) / turns


def compare(script: str, contenders: Sequence[str], turns: int,
            pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Count each contender, print its instructions per turn, then each pair's ratio."""
    per_turn = {}
    for contender in contenders:
        per_turn[contender] = instructions(script, contender, turns)
        print(f"{contender:7} {per_turn[contender] / 1e6:.4f}M instructions per turn", flush=True)
    for ours, floor in pairs:
        if ours in per_turn and floor in per_turn:
            print(f"{ours} / {floor}: {per_turn[ours] / per_turn[floor]:.3f}x, "
                  f"{(per_turn[ours] - per_turn[floor]) / 1e3:+.1f}k")
    return per_turn


def main(script: str, description: str, contenders: Sequence[str], turns: int,
         run_turns: Callable[[str, int], None], pairs: Sequence[tuple[str, str]]) -> None:
    """A count_*.py script's command line: count the contenders chosen and print the
    pairs' ratios, or (``--child CONTENDER TURNS``, in callgrind's child) run the turns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--turns", type=int, default=turns, help="turns counted")
    parser.add_argument("--contenders", nargs="+", choices=contenders, default=contenders)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_turns(args.child[0], int(args.child[1]))
    else:
        compare(script, args.contenders, args.turns, pairs)
