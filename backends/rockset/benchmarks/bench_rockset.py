"""chathistory's Rockset backend against langchain_community's RocksetChatMessageHistory.

Both use the real rockset 2.1.2 SDK over HTTP against one in-process emulator, in
one run. Run from the repository root::

    .venv/bin/python backends/rockset/benchmarks/bench_rockset.py [--rounds 15]

Figures are medians over the rounds. Targets (issue 3): add_messages of 10 in 1
request (theirs 10); building a history for an existing session in 0 requests
(theirs >= 2); a turn (build, read, add 2) in 2 requests (theirs 5) and >= 2.3x
faster with 5 ms latency; a sync=True turn with a 200 ms visibility delay costing
no more than the delay plus one round trip over the same turn without delay; and
no import of the rockset SDK for sqlite users.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from rockset_emulator import RocksetEmulator

from chathistory import history_factory

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "langchain-community is being sunset"
    from langchain_community.chat_message_histories import RocksetChatMessageHistory

API_KEY = "bench-key"
LATENCY = 0.005
DELAY = 0.2


def ten_messages(tag: str) -> list[BaseMessage]:
    return [HumanMessage(f"{tag} q{n}") if n % 2 == 0 else AIMessage(f"{tag} a{n}")
            for n in range(10)]


def two_messages(tag: str) -> list[BaseMessage]:
    return [HumanMessage(f"{tag} question"), AIMessage(f"{tag} answer")]


def requests_of(emu: RocksetEmulator, action: Callable[[], Any]) -> int:
    emu.reset_request_count()
    action()
    return emu.request_count


def seconds_of(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def row(label: str, ours: float, theirs: float, unit: str, target: str, ok: bool) -> None:
    if unit == "req":
        figures = f"ours {ours:6.0f} req   theirs {theirs:6.0f} req"
    else:
        figures = f"ours {ours * 1000:6.1f} ms    theirs {theirs * 1000:6.1f} ms"
    ratio = f"{theirs / ours:5.2f}x" if ours else "  n/a"
    print(f"{label:<44} {figures}   ratio {ratio}   target {target:<28} {verdict(ok)}")


def sqlite_imports_rockset() -> bool:
    script = (
        "import sys, tempfile, os\n"
        "from chathistory import ChatHistory\n"
        "from langchain_core.messages import HumanMessage\n"
        "path = os.path.join(tempfile.mkdtemp(), 'db')\n"
        "h = ChatHistory('s', backend='sqlite', path=path)\n"
        "h.add_messages([HumanMessage('hi')]); h.messages\n"
        "print('rockset' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    warnings.simplefilter("ignore", DeprecationWarning)  # urllib3 1.26's getheader notices

    with RocksetEmulator(api_key=API_KEY) as emu:
        client = emu.client()
        factory = history_factory("rockset", api_key=API_KEY, host=emu.url,
                                  collection="bench_ours")
        sync_factory = history_factory("rockset", api_key=API_KEY, host=emu.url,
                                       collection="bench_ours", sync=True)

        def their_history(session_id: str, **options: Any) -> RocksetChatMessageHistory:
            return RocksetChatMessageHistory(session_id=session_id, client=client,
                                             collection="bench_theirs", **options)

        # The backend's first use (collection created) and sessions that exist already.
        for session in ("s", "turns", "sync"):
            factory(session).add_messages([HumanMessage("first")])
            sync_factory(session).messages  # noqa: B018 - the sync backend's first use
            their_history(session).add_message(HumanMessage("first"))

        print(f"rockset benchmark: {rounds} rounds, medians; the emulator in-process on {emu.url}")
        print()

        ours_add = [requests_of(emu, lambda: factory("s").add_messages(ten_messages("o")))
                    for _ in range(rounds)]
        theirs_add = []
        for _ in range(rounds):
            history = their_history("s")
            theirs_add.append(requests_of(emu, lambda h=history: h.add_messages(
                ten_messages("t"))))
        ours_n, theirs_n = statistics.median(ours_add), statistics.median(theirs_add)
        row("HTTP requests, add_messages of 10", ours_n, theirs_n, "req",
            "ours 1, theirs 10", ours_n == 1 and theirs_n == 10)

        ours_build = [requests_of(emu, lambda: factory("s")) for _ in range(rounds)]
        theirs_build = [requests_of(emu, lambda: their_history("s")) for _ in range(rounds)]
        ours_n, theirs_n = statistics.median(ours_build), statistics.median(theirs_build)
        row("HTTP requests, build an existing session", ours_n, theirs_n, "req",
            "ours 0, theirs >= 2", ours_n == 0 and theirs_n >= 2)

        def our_turn(tag: str, source: Any = factory, session: str = "turns") -> None:
            history = source(session)
            history.messages  # noqa: B018
            history.add_messages(two_messages(tag))

        def their_turn(tag: str, session: str = "turns", **options: Any) -> None:
            history = their_history(session, **options)
            history.messages  # noqa: B018
            history.add_messages(two_messages(tag))

        ours_turn = [requests_of(emu, lambda: our_turn("o")) for _ in range(rounds)]
        theirs_turn = [requests_of(emu, lambda: their_turn("t")) for _ in range(rounds)]
        ours_n, theirs_n = statistics.median(ours_turn), statistics.median(theirs_turn)
        row("HTTP requests, a turn (build, read, add 2)", ours_n, theirs_n, "req",
            "ours 2, theirs 5", ours_n == 2 and theirs_n == 5)

        emu.set_latency(LATENCY)
        ours_times, theirs_times, round_trips = [], [], []
        for _ in range(rounds):  # interleaved, so both see the same machine state
            ours_times.append(seconds_of(lambda: our_turn("o")))
            theirs_times.append(seconds_of(lambda: their_turn("t")))
            round_trips.append(seconds_of(lambda: factory("turns").get_messages(limit=1)))
        ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
        round_trip = statistics.median(round_trips)
        row(f"turn wall time, latency {LATENCY * 1000:.0f} ms", ours_s, theirs_s, "s",
            ">= 2.3x better", theirs_s / ours_s >= 2.3)

        emu.set_visibility_delay(DELAY)
        sync_times, their_sync_times = [], []
        for _ in range(rounds):
            sync_times.append(seconds_of(lambda: our_turn("o", sync_factory, "sync")))
            their_sync_times.append(seconds_of(lambda: their_turn("t", "sync", sync=True)))
        emu.set_visibility_delay(0.0)
        sync_s, their_sync_s = statistics.median(sync_times), statistics.median(their_sync_times)
        budget = ours_s + DELAY + round_trip
        row(f"sync=True turn, delay {DELAY * 1000:.0f} ms, latency {LATENCY * 1000:.0f} ms",
            sync_s, their_sync_s, "s", f"<= {budget * 1000:.0f} ms", sync_s <= budget)
        print(f"    one round trip {round_trip * 1000:.1f} ms; the same turn without delay "
              f"{ours_s * 1000:.1f} ms; so the sync wait cost {(sync_s - ours_s) * 1000:.1f} ms "
              f"= the {DELAY * 1000:.0f} ms delay + {(sync_s - ours_s - DELAY) * 1000:.1f} ms "
              f"(budget: delay + one round trip = {(DELAY + round_trip) * 1000:.1f} ms)")
        emu.set_latency(0.0)

    imports = sqlite_imports_rockset()
    print(f"{'importing chathistory + sqlite imports rockset':<44} "
          f"{'yes' if imports else 'no':<45} target no {'':<35}{verdict(not imports)}")


if __name__ == "__main__":
    main()
