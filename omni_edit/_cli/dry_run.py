"""``omni-edit batch --dry-run``: probe every input, estimate the bill, submit nothing.

Each clip's MP4 header is read from its host (a few KB by Range requests, as preflight
does), so the totals are of real durations. Tokens follow the documented rates
(docs/api.md#billing), for the input and for an output as long as the input (the edit
keeps the length). Credits are a rough estimate: docs/api.md#billing gives no price, so
the rate is inferred from its one example (see ``CREDITS_PER_1K_TOKENS_ESTIMATE``) and
may be overridden.
"""

from __future__ import annotations

import logging

import anyio

from .._client import Client
from .._constants import INPUT_TOKENS_PER_SECOND, OUTPUT_TOKENS_PER_SECOND
from .._exceptions import OmniEditError
from .context import Context
from .errors import EXIT_FAILED, EXIT_OK, plural
from .manifest import Manifest, Row

__all__ = ["dry_run"]

logger = logging.getLogger("omni_edit.cli")


async def dry_run(
    ctx: Context,
    client: Client,
    manifest: Manifest,
    *,
    concurrency: int,
    credits_per_1k_tokens: float,
) -> int:
    """Probe the manifest's inputs and print the totals; 0 when every input would be
    accepted, 1 when some would be refused. Sends nothing to the API."""
    seconds: dict[int, float] = {}
    refused: dict[int, tuple[Row, str]] = {}
    invalid = 0
    slots = anyio.Semaphore(concurrency)

    async def check(row: Row) -> None:
        try:
            # The same check preflight makes: an MP4 the API would take, <= 10 s.
            info = await client.preflight(row.fields["video_url"])
        except Exception as exc:
            # Not only OmniEditError: a clip that cannot be checked, whatever the
            # reason, is one refused line, not the end of the dry run.
            if not isinstance(exc, OmniEditError):
                logger.debug("probing input %d failed", row.index, exc_info=True)
            refused[row.index] = (row, str(exc) or type(exc).__name__)
        else:
            seconds[row.index] = info.duration
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for row in manifest.rows():
            if row.problem is not None:
                invalid += 1  # reported as the manifest was read
                continue
            await slots.acquire()
            tg.start_soon(check, row)

    for index in sorted(refused):
        row, why = refused[index]
        if ctx.json:
            ctx.emit({"event": "refused", "index": index, "line": row.line, "error": why})
        else:
            ctx.note(f"{manifest.place(row.line, row.fields.get('video_url', ''))}: {why}")
    total_seconds = sum(seconds.values())
    tokens_in = round(total_seconds * INPUT_TOKENS_PER_SECOND)
    tokens_out = round(total_seconds * OUTPUT_TOKENS_PER_SECOND)
    credits = (tokens_in + tokens_out) * credits_per_1k_tokens / 1000
    if ctx.json:
        ctx.emit(
            {
                "event": "dry_run",
                "inputs": len(seconds) + len(refused) + invalid,
                "accepted": len(seconds),
                "refused": len(refused),
                "invalid": invalid,
                "input_seconds": round(total_seconds, 3),
                "tokens_estimate": tokens_in + tokens_out,
                "credits_estimate": round(credits, 2),
                "credits_per_1k_tokens": credits_per_1k_tokens,
            }
        )
    else:
        inputs = len(seconds) + len(refused) + invalid
        ctx.say(f"Dry run of {plural(inputs, 'input')}: nothing was submitted.")
        ctx.say(f"  accepted   {len(seconds)}, with {total_seconds:.1f} s of input video in all")
        if refused or invalid:
            ctx.say(f"  refused    {len(refused) + invalid} (see the lines above)")
        ctx.say(
            f"  tokens     about {tokens_in + tokens_out:,} ({tokens_in:,} in + {tokens_out:,}"
            f" out, at {INPUT_TOKENS_PER_SECOND:,} per second of video each way)"
        )
        ctx.say(
            f"  credits    roughly {credits:,.1f}: a rough estimate at"
            f" {credits_per_1k_tokens:g} per 1k tokens, a rate inferred from the API's"
            " example; the API's own figure at submission is authoritative"
        )
    return EXIT_OK if not refused and not invalid else EXIT_FAILED
