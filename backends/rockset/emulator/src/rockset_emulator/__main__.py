"""``rockset-emulator`` (or ``python -m rockset_emulator``): serve the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import RocksetEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rockset-emulator",
        description="A local server speaking the Rockset REST subset that chat histories use.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=3000, help="port to bind, 0 for any (default 3000)"
    )
    parser.add_argument("--api-key", default="test-key", help="the API key clients must send")
    parser.add_argument(
        "--ready-delay", type=float, default=0.0, metavar="S",
        help="seconds a new collection stays CREATED before it is READY",
    )  # fmt: skip
    parser.add_argument(
        "--visibility-delay", type=float, default=0.0, metavar="S",
        help="seconds before a write is visible to queries",
    )  # fmt: skip
    parser.add_argument(
        "--persist", metavar="FILE",
        help="keep state in this JSON file (loaded at start, saved on each change)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    emulator = RocksetEmulator(
        api_key=args.api_key,
        ready_delay=args.ready_delay,
        visibility_delay=args.visibility_delay,
        persist_path=args.persist,
        host=args.host,
        port=args.port,
    )
    try:
        emulator.start()
    except (OSError, RuntimeError) as exc:
        print(f"error: cannot start the emulator: {exc}", file=sys.stderr)
        return 1

    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    try:
        print(emulator.url, flush=True)
        print("Rockset emulator running; press Ctrl-C to stop.", file=sys.stderr, flush=True)
        while not stopping.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt stop()
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
