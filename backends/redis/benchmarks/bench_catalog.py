"""Benchmark: the session catalog on Redis, at a small store and a large one, side by side.

Run from the repository root (``redis-server`` on PATH)::

    .venv/bin/python backends/redis/benchmarks/bench_catalog.py [--large 1000000] [--rounds 5]

It starts a private ``redis-server`` (a free local port, a temporary directory,
no persistence; removed at the end), fills two key prefixes of it, one with
10,000 sessions and one with ``--large`` sessions, each over owners of 100
sessions (as issue 19's 1,000,000 sessions over 10,000 owners), two messages
each and last-update times spread over 90 days, and measures, the contenders
taking turns in each round:

* a page of one owner's 20 newest sessions (``list_summaries(owner=..., limit=20)``),
  at both sizes: target, large / small at most 1.3x;
* erasing one owner's 100 sessions (``erase(backend, owner=...)``), a different
  owner each time, at both sizes: target at most 1.3x;
* a turn (read the newest 10 messages, append 2) through this backend, with the
  catalog kept, against the same turn through the backend as it was before the
  catalog (``--baseline``, a commit read from git and imported under another
  name): target at most 1.1x.

The floor of the erasure is printed too: raw redis-py on its own connection doing
the least an erasure of one owner must (read the owner's set, then run the
backend's erase script over those sessions: two round trips), at both sizes, to
tell what the server's own structures cost as they grow from what the backend adds.

Each figure is the median over all rounds of one operation's time. The exit status is 1
when one of the backend's lines misses its target, else 0: the floor has no target.
"""

from __future__ import annotations

import argparse
import importlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from chathistory_redis import RedisBackend
from chathistory_redis import keyspace as ks

from chathistory.catalog import SessionSummary, erase
from chathistory.testing import numbered_records

OWNER_SESSIONS = 100
FILL_BATCH = 1000
REPOSITORY = Path(__file__).parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def private_server() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="chathistory-bench-catalog-"))
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def fill(backend: RedisBackend, sessions: int) -> float:
    """``sessions`` sessions of two messages, owned 100 to an owner; returns the seconds."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    chance = random.Random(sessions)
    records = numbered_records(2)
    for start in range(0, sessions, FILL_BATCH):
        ids = [f"s{number}" for number in range(start, min(start + FILL_BATCH, sessions))]
        backend.append_many({session_id: records for session_id in ids})
        summaries = []
        for session_id in ids:
            updated = now - timedelta(seconds=chance.uniform(60, 90 * 86400))
            owner = f"o{int(session_id[1:]) % (sessions // OWNER_SESSIONS)}"
            summaries.append(SessionSummary(session_id, owner, f"title {session_id}", {},
                                            updated - timedelta(hours=1), updated, 0))
        backend.restore_summaries(summaries)
    return time.perf_counter() - started


def previous_backend(commit: str, url: str, prefix: str, target: Path) -> Any:
    """The redis backend of ``commit``, written into ``target`` (a temporary directory the
    caller removes) and imported from there as ``chathistory_redis_previous``."""
    package = target / "chathistory_redis_previous"
    package.mkdir()
    for name in ("__init__", "backend", "client", "config", "errors", "keyspace", "plugin"):
        text = subprocess.run(
            ["git", "-C", str(REPOSITORY), "show",
             f"{commit}:backends/redis/src/chathistory_redis/{name}.py"],
            check=True, capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(
            text.replace("chathistory_redis", "chathistory_redis_previous"))
    sys.path.insert(0, str(target))
    module = importlib.import_module("chathistory_redis_previous")
    backend = module.RedisBackend.from_options(url=url, key_prefix=prefix)
    backend.create_collection()
    return backend


def floors(sizes: dict[str, int]) -> list[str]:
    return [f"floor {name}" for name in sizes]


def floor_erase(raw: redis.Redis, backend: RedisBackend, owner: str) -> None:
    """The least an erasure of ``owner`` does: its set read, the erase script run once."""
    index = ks.index_keys("chathistory", backend.config.effective_key_prefix)
    ids: list[bytes] = raw.zrange(index.owned + owner.encode(), 0, -1)  # type: ignore[assignment]
    sessions, _, _ = raw.evalsha(ks.ERASE.sha, 7 + len(ids), *index.catalog,
                                 *(backend.key(id_.decode()) for id_ in ids), index.owned,
                                 "0", "", *ids)
    assert sessions == OWNER_SESSIONS, sessions


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=200, help="pages per round and size")
    parser.add_argument("--erasures", type=int, default=6, help="owners erased per round")
    parser.add_argument("--turns", type=int, default=300, help="turns per round")
    parser.add_argument("--baseline", default="ef592bf",
                        help="the commit of the backend without the catalog")
    options = parser.parse_args()
    with private_server() as url, tempfile.TemporaryDirectory(
            prefix="chathistory-redis-previous-") as previous:
        sizes = {"small": options.small, "large": options.large}
        backends = {name: RedisBackend.from_options(url=url, key_prefix=name)
                    for name in sizes}
        for name, size in sizes.items():
            seconds = fill(backends[name], size)
            print(f"filled {size:,} sessions ({size // OWNER_SESSIONS:,} owners) "
                  f"in {seconds:.0f} s", flush=True)
        with_catalog = RedisBackend.from_options(url=url, key_prefix="turn-new")
        without = previous_backend(options.baseline, url, "turn-old", Path(previous))
        for backend in (with_catalog, without):
            backend.create_collection()
            backend.append("t", numbered_records(20))
        pages: dict[str, list[float]] = {name: [] for name in sizes}
        erasures: dict[str, list[float]] = {name: [] for name in (*sizes, *floors(sizes))}
        raw = redis.Redis.from_url(url)
        turns: dict[str, list[float]] = {"with": [], "without": []}
        erased = 0
        spared = 2 * options.rounds * options.erasures  # owners from here on are never erased
        chance = random.Random(0)
        records = numbered_records(2)
        for _ in range(options.rounds):
            for _ in range(options.pages):
                for name in sizes:
                    owner = f"o{chance.randrange(spared, sizes['small'] // OWNER_SESSIONS)}"
                    started = time.perf_counter()
                    page = backends[name].list_summaries(owner=owner, limit=20)
                    pages[name].append(time.perf_counter() - started)
                    assert len(page.summaries) == 20, (name, owner)
            for _ in range(options.erasures):
                owner = f"o{erased}"
                # Each size goes first half the time: what the one before leaves in the
                # server's caches falls on both alike.
                order = list(sizes) if erased % 4 == 0 else list(sizes)[::-1]
                for name in order:
                    started = time.perf_counter()
                    receipt = erase(backends[name], owner=owner)
                    erasures[name].append(time.perf_counter() - started)
                    assert receipt.sessions == OWNER_SESSIONS, (name, receipt)
                for name in order:
                    started = time.perf_counter()
                    floor_erase(raw, backends[name], f"o{erased + 1}")
                    erasures[f"floor {name}"].append(time.perf_counter() - started)
                erased += 2
            for _ in range(options.turns):
                for name, backend in (("with", with_catalog), ("without", without)):
                    started = time.perf_counter()
                    backend.fetch("t", limit=10)
                    backend.append("t", records)
                    turns[name].append(time.perf_counter() - started)
        for backend in (*backends.values(), with_catalog, without):
            backend.close()
        raw.close()
    small, large = f"{options.small:,}", f"{options.large:,}"
    # A target of None: the floor, printed beside ours, is no target of ours to miss.
    report: list[tuple[str, float, float, float | None]] = [
        (f"one owner's 20 newest: {small} vs {large} sessions",
         median_ms(pages["small"]), median_ms(pages["large"]), 1.3),
        (f"erase one owner's 100 sessions: {small} vs {large}",
         median_ms(erasures["small"]), median_ms(erasures["large"]), 1.3),
        (f"floor: raw redis-py, owner's set + erase script: {small} vs {large}",
         median_ms(erasures["floor small"]), median_ms(erasures["floor large"]), None),
        ("a turn (read 10, append 2): without vs with the catalog",
         median_ms(turns["without"]), median_ms(turns["with"]), 1.1),
    ]
    failed = 0
    for label, base, measured, target in report:
        ratio = measured / base
        if target is None:
            verdict = "the floor, no target"
        else:
            failed += ratio > target
            verdict = f"target <= {target}x: {'met' if ratio <= target else 'MISSED'}"
        print(f"{label}: {base:.3f} ms vs {measured:.3f} ms = {ratio:.2f}x ({verdict})")
    ours, floor = (report[n][2] / report[n][1] for n in (1, 2))
    print(f"erase: ours' ratio / the floor's = {ours / floor:.2f} (no target)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
