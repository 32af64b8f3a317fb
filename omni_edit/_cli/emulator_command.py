"""``omni-edit emulator``: the local emulator of the API, served until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .._media.extra import MEDIA_EXTRA_HINT, media_available
from ..emulator import Emulator
from .streams import put

__all__ = ["EMULATOR_API_KEY", "serve_emulator"]

# Without --api-key any non-empty key works against the emulator; this one reads as
# what it is.
EMULATOR_API_KEY = "emulator-key"


async def serve_emulator(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, after printing the base URL and the ``export``
    lines that point a client at it. ``ValueError`` for a knob out of range, ``OSError``
    when an address cannot be bound.

    With ``--api-key`` only that key is accepted (any other, or none, gets the API's
    401), so a wrong key can be tried; ``$OMNI_EDIT_API_KEY`` is not read for this, since
    it may hold a real key. Without it, any non-empty key is accepted.
    """
    key = (args.api_key or "").strip()
    # Real, playable results when the media extra is there (docs/media.md).
    real = media_available()
    emulator = Emulator(
        api_keys=[key] if key else None,
        host=args.host,
        port=args.port,
        result_host=args.result_host,
        processing_time=tuple(args.processing_time),
        failure_rate=args.failure_rate,
        cancel_rate=args.cancel_rate,
        rate_429=args.rate_429,
        rate_5xx=args.rate_5xx,
        concurrency_limit=args.concurrency_limit,
        credits=args.credits,
        allow_http_callbacks=args.allow_http_callbacks,
        real_results=real,
        estimate=args.estimate,
        batch_reads=args.batch_reads == "on",
        batch_off_status=405 if args.batch_reads == "405" else 404,
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
        put(
            sys.stdout,
            f"omni-edit emulator: API on {emu.base_url}, results on {emu.result_base_url}",
        )
        if not real:
            put(
                sys.stdout,
                "Results are placeholders (MP4 headers, no playable media);"
                f" for real edited clips: {MEDIA_EXTRA_HINT}",
            )
        put(sys.stdout, f"export OMNI_EDIT_BASE_URL={emu.base_url}")
        if key:
            # The key itself is not echoed: a key on a screen or in a log is a leaked key.
            put(
                sys.stdout,
                "Only the key given with --api-key is accepted (others get HTTP 401):"
                " set OMNI_EDIT_API_KEY to it.",
            )
        else:
            put(sys.stdout, f"export OMNI_EDIT_API_KEY={EMULATOR_API_KEY}")
        put(sys.stdout, "Press Ctrl-C to stop.")
        await stop.wait()
    return 0
