"""The ``omni-edit`` command line.

``omni-edit demo`` runs the whole product against the built-in emulator with no key;
``omni-edit emulator`` serves the local emulator of the API until Ctrl-C, printing the
two ``export`` lines that point a client at it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from .emulator import Emulator

__all__ = ["main"]

# Any non-empty key works against the emulator; this one reads as what it is.
EMULATOR_API_KEY = "emulator-key"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omni-edit", description="Edit videos with the Gemini Omni Flash video-edit API."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    emulator = commands.add_parser(
        "emulator",
        help="serve a local emulator of the API until Ctrl-C",
        description="Serve a local emulator of the API (and its result host) until Ctrl-C.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="API address (default %(default)s)")
    emulator.add_argument("--port", type=int, default=8787, help="API port (default %(default)s)")
    emulator.add_argument(
        "--result-host",
        default="127.0.0.2",
        help="address serving result files, another origin (default %(default)s)",
    )
    emulator.add_argument(
        "--processing-time",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        default=(0.2, 0.5),
        help="seconds a task runs, drawn uniformly (default 0.2 0.5)",
    )
    for flag, what in (
        ("--failure-rate", "share of tasks that end failed"),
        ("--cancel-rate", "share of tasks that end cancelled"),
        ("--rate-429", "share of API requests answered 429"),
        ("--rate-5xx", "share of API requests answered 500/502/503"),
    ):
        emulator.add_argument(flag, type=float, default=0.0, metavar="F", help=f"{what} (0..1)")
    emulator.add_argument(
        "--concurrency-limit", type=int, metavar="N", help="unfinished tasks allowed per key"
    )
    emulator.add_argument(
        "--allow-http-callbacks",
        action="store_true",
        help="accept http:// and loopback callback URLs (the real API refuses them)",
    )
    demo = commands.add_parser(
        "demo",
        help="edit a dozen sample clips against the built-in emulator (no key needed)",
        description="Run a dozen edits end to end against the built-in emulator.",
    )
    demo.add_argument(
        "--out-dir",
        type=Path,
        default=Path("omni-edit-demo"),
        help="where results are saved (default %(default)s)",
    )
    return parser


async def _serve_emulator(args: argparse.Namespace) -> int:
    emulator = Emulator(
        host=args.host,
        port=args.port,
        result_host=args.result_host,
        processing_time=tuple(args.processing_time),
        failure_rate=args.failure_rate,
        cancel_rate=args.cancel_rate,
        rate_429=args.rate_429,
        rate_5xx=args.rate_5xx,
        concurrency_limit=args.concurrency_limit,
        allow_http_callbacks=args.allow_http_callbacks,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with emulator as emu:
        # Ctrl-C ends the wait instead of raising into the middle of a request.
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except NotImplementedError:  # Windows: KeyboardInterrupt does the job
                break
        print(f"omni-edit emulator: API on {emu.base_url}, results on {emu.result_base_url}")
        print(f"export OMNI_EDIT_BASE_URL={emu.base_url}")
        print(f"export OMNI_EDIT_API_KEY={EMULATOR_API_KEY}")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status: 0, 1 if the emulator cannot listen, 2 for bad arguments."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        try:
            return asyncio.run(run_demo(args.out_dir))
        except KeyboardInterrupt:
            return 130
    try:
        return asyncio.run(_serve_emulator(args))
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        return 0
    except ValueError as exc:
        print(f"omni-edit emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"omni-edit emulator: cannot listen: {exc}", file=sys.stderr)
        return 1
