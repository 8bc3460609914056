"""The server's work to erase one owner's 100 sessions, at 10,000 and 1,000,000, by callgrind.

    .venv/bin/python backends/redis/benchmarks/count_erase.py [--owners 10] [--reps 2]

bench_catalog's erasure figures are times, and on a busy 2-core machine the time
of a few milliseconds swings by more than what the store's size adds. This counts
instead, on the server alone: it fills a private ``redis-server`` as bench_catalog
does (two key prefixes, 10,000 and ``--large`` sessions, 100 to an owner), saves
it, and loads that file into a ``redis-server`` run under ``valgrind
--tool=callgrind --cache-sim=yes`` with a ``--ll`` last-level cache (default 32 MB,
16-way: this machine's L3), counting only ``processCommand`` (each command's
execution, a script's own commands included; not the reading of requests nor the
writing of replies). Then, ``--reps`` times, ``--owners`` owners erased at each size
by the backend (``erase(backend, owner=...)``: "ours") and by the floor (the owner's
set read, then the erase script: bench_catalog's), one dump of the counters a phase,
after a first round of each, not counted (the scripts loaded, the caches warm).

Printed, per erasure: instructions, simulated last-level misses (what grows with
the store: a million-entry structure does not stay in the cache), and an estimate of
cycles (instructions + 10 a first-level miss + 100 a last-level miss, as
callgrind_annotate's), with the large / small ratio. The counts repeat from run to
run, whatever else the machine runs; the estimate is a model, not a time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_catalog as bench
import redis
from chathistory_redis import RedisBackend
from chathistory_redis import keyspace as ks

from chathistory.catalog import erase

SIZES = ("small", "large")
MODES = ("ours", "floor")


@contextmanager
def server(directory: Path, port: int, wrapper: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server on ``port`` keeping ``directory/dump.rdb`` (loaded if it is there)."""
    process = subprocess.Popen(
        [*wrapper, "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--dbfilename", "dump.rdb"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(6000):  # loading a million sessions under valgrind takes a while
            try:
                client.ping()  # LOADING is an error reply: BusyLoadingError
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.1)
        client.close()
        yield process
    finally:
        process.terminate()
        process.wait(120)


def counters(path: Path) -> dict[str, int]:
    """A callgrind dump's totals by event name."""
    text = path.read_text()
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M)
    assert events and totals, path
    return dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))


def each(rows: list[dict[str, float]], key: str, scale: float = 1e3) -> str:
    """One figure a rep."""
    unit = "k" if scale == 1e3 else ""
    return " ".join(f"{row[key] / scale:.0f}{unit}" for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--owners", type=int, default=10, help="owners erased a phase")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--ll", default="33554432,16,64",
                        help="valgrind's --LL: size in bytes, ways, line size")
    options = parser.parse_args()
    needed = (options.reps + 1) * len(MODES) * options.owners
    if needed > options.small // bench.OWNER_SESSIONS:
        parser.error(f"{needed} owners erased a size, but --small has fewer")
    sizes = {"small": options.small, "large": options.large}
    with tempfile.TemporaryDirectory(prefix="chathistory-count-erase-") as name:
        directory = Path(name)
        port = bench._free_port()
        with server(directory, port, []):
            for size, sessions in sizes.items():
                backend = RedisBackend.from_options(url=f"redis://127.0.0.1:{port}/0",
                                                    key_prefix=size)
                seconds = bench.fill(backend, sessions)
                backend.close()
                print(f"filled {sessions:,} sessions in {seconds:.0f} s", flush=True)
            saving = redis.Redis(port=port, socket_timeout=None)
            saving.save()
            saving.close()
        out = directory / "cg.out"
        wrapper = ["valgrind", "--tool=callgrind", "--cache-sim=yes", f"--LL={options.ll}",
                   "--instr-atstart=no", "--collect-atstart=no",
                   "--toggle-collect=processCommand", f"--callgrind-out-file={out}"]
        port = bench._free_port()
        url = f"redis://127.0.0.1:{port}/0"
        with server(directory, port, wrapper) as process:
            pid = str(process.pid)
            subprocess.run(["callgrind_control", "-i", "on", pid], check=True,
                           capture_output=True)
            backends = {size: RedisBackend.from_options(url=url, key_prefix=size)
                        for size in sizes}
            raw = redis.Redis.from_url(url, socket_timeout=None)
            raw.script_load(ks.ERASE.body)
            phases: list[tuple[str, str]] = []
            owner = 0
            for rep in range(-1, options.reps):  # -1: a round to warm up, not counted
                if rep == 0:
                    subprocess.run(["callgrind_control", "-z", pid], check=True,
                                   capture_output=True)
                for mode in MODES:
                    for size in SIZES if rep % 2 == 0 else SIZES[::-1]:
                        for number in range(owner, owner + options.owners):
                            if mode == "ours":
                                receipt = erase(backends[size], owner=f"o{number}")
                                assert receipt.sessions == bench.OWNER_SESSIONS, receipt
                            else:
                                bench.floor_erase(raw, backends[size], f"o{number}")
                        if rep >= 0:
                            subprocess.run(["callgrind_control", "-d", pid], check=True,
                                           capture_output=True)
                            phases.append((mode, size))
                    owner += options.owners
            for backend in backends.values():
                backend.close()
            raw.close()
        dumps = sorted(directory.glob("cg.out.*"), key=lambda path: int(path.suffix[1:]))
        assert len(dumps) >= len(phases), dumps
        found: dict[tuple[str, str], list[dict[str, float]]] = {}
        for phase, dump in zip(phases, dumps, strict=False):
            count = counters(dump)
            first = count["I1mr"] + count["D1mr"] + count["D1mw"]
            last = count["ILmr"] + count["DLmr"] + count["DLmw"]
            found.setdefault(phase, []).append({
                "Ir": count["Ir"] / options.owners, "LL": last / options.owners,
                "est": (count["Ir"] + 10 * first + 100 * last) / options.owners})
    print(f"per erasure of one owner's 100 sessions, the server's work "
          f"({options.small:,} / {options.large:,} sessions; each rep's figure):")
    for mode in MODES:
        small, large = found[(mode, "small")], found[(mode, "large")]
        ratios = " ".join(f"{b['est'] / a['est']:.2f}x" for a, b in zip(small, large, strict=True))
        print(f"  {mode}: instructions {each(small, 'Ir')} / {each(large, 'Ir')}; "
              f"last-level misses {each(small, 'LL', 1)} / {each(large, 'LL', 1)}; "
              f"estimated cycles {each(small, 'est')} / {each(large, 'est')} = {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
