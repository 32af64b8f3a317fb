"""``omni-edit batch --dry-run``: probe every input, estimate the bill, submit nothing;
and the same estimate for the balance check before a batch.

Each clip's MP4 header is read from its host (a few KB by Range requests, as preflight
does), so the totals are of real durations. Tokens follow the documented rates
(docs/api.md#billing), for the input and for an output as long as the input (the edit
keeps the length). Credits are a rough estimate: docs/api.md#billing gives no price, so
the rate is inferred from its one example (see ``CREDITS_PER_1K_TOKENS_ESTIMATE``) and
may be overridden.
"""

from __future__ import annotations

import logging
import math

import anyio
import attrs

from .._client import Client
from .._constants import INPUT_TOKENS_PER_SECOND, MAX_VIDEO_SECONDS, OUTPUT_TOKENS_PER_SECOND
from .._exceptions import OmniEditError
from .._media.probe import check_clip
from .._media.segments import SEGMENT_SECONDS
from .._models import Balance
from .context import Context
from .errors import EXIT_FAILED, EXIT_OK, plural
from .manifest import Manifest, Row

__all__ = ["Estimate", "dry_run", "estimate"]

logger = logging.getLogger("omni_edit.cli")


@attrs.define
class Estimate:
    """What probing a manifest found: how many inputs were accepted and their seconds of
    video in all (totals only, so a long manifest costs no memory per row), each refused
    input's reason, and how many rows were unusable."""

    accepted: int = 0
    total_seconds: float = 0.0
    # Tasks the accepted inputs make: a long clip makes one per segment.
    tasks: int = 0
    refused: dict[int, tuple[Row, str]] = attrs.Factory(dict)
    invalid: int = 0

    @property
    def inputs(self) -> int:
        return self.accepted + len(self.refused) + self.invalid

    def tokens(self, extra_seconds: float = 0.0) -> tuple[int, int]:
        """Tokens in and out for the accepted inputs, and ``extra_seconds`` more."""
        seconds = self.total_seconds + extra_seconds
        return round(seconds * INPUT_TOKENS_PER_SECOND), round(seconds * OUTPUT_TOKENS_PER_SECOND)

    def credits(self, credits_per_1k_tokens: float, extra_seconds: float = 0.0) -> float:
        tokens_in, tokens_out = self.tokens(extra_seconds)
        return (tokens_in + tokens_out) * credits_per_1k_tokens / 1000


async def estimate(
    client: Client, manifest: Manifest, *, concurrency: int, split: bool = True
) -> Estimate:
    """Probe every usable row's clip (as preflight does); sends nothing to the API.
    With ``split``, a clip over 10 s is accepted and counted as its segments
    (docs/media.md#long-clips): its seconds are billed once, in segments."""
    found = Estimate()
    slots = anyio.Semaphore(concurrency)

    async def check(row: Row) -> None:
        try:
            # The same check preflight makes: an MP4 the API would take, <= 10 s; or,
            # split, a clip of any length (a URL clip is downloaded and split too).
            video = row.fields["video_url"]
            info = await client.probe(video)
            segments = 1
            if split and info.duration > MAX_VIDEO_SECONDS:
                segments = math.ceil(info.duration / SEGMENT_SECONDS - 1e-9)
            else:
                check_clip(info)
        except Exception as exc:
            # Not only OmniEditError: a clip that cannot be checked, whatever the
            # reason, is one refused line, not the end of the dry run.
            if not isinstance(exc, OmniEditError):
                logger.debug("probing input %d failed", row.index, exc_info=True)
            found.refused[row.index] = (row, str(exc) or type(exc).__name__)
        else:
            found.accepted += 1
            found.tasks += segments
            found.total_seconds += info.duration
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for row in manifest.rows():
            if row.problem is not None:
                found.invalid += 1  # reported as the manifest was read
                continue
            await slots.acquire()
            tg.start_soon(check, row)
    return found


async def dry_run(
    ctx: Context,
    client: Client,
    manifest: Manifest,
    *,
    concurrency: int,
    credits_per_1k_tokens: float,
    split: bool = True,
    balance: Balance | None = None,
    balance_note: str = "",
) -> int:
    """Probe the manifest's inputs and print the totals, beside ``balance`` when known
    (else ``balance_note`` says why not); 0 when every input would be accepted, 1 when
    some would be refused. Sends nothing to the API but the balance read."""
    found = await estimate(client, manifest, concurrency=concurrency, split=split)
    for index in sorted(found.refused):
        row, why = found.refused[index]
        if ctx.json:
            ctx.emit({"event": "refused", "index": index, "line": row.line, "error": why})
        else:
            ctx.note(f"{manifest.place(row.line, row.fields.get('video_url', ''))}: {why}")
    total_seconds = found.total_seconds
    tokens_in, tokens_out = found.tokens()
    credits = found.credits(credits_per_1k_tokens)
    refused = len(found.refused) + found.invalid
    covered = None if balance is None else balance.available >= credits
    if ctx.json:
        ctx.emit(
            {
                "event": "dry_run",
                "inputs": found.inputs,
                "accepted": found.accepted,
                "tasks": found.tasks,
                "refused": len(found.refused),
                "invalid": found.invalid,
                "input_seconds": round(total_seconds, 3),
                "tokens_estimate": tokens_in + tokens_out,
                "credits_estimate": round(credits, 2),
                "credits_per_1k_tokens": credits_per_1k_tokens,
                "balance_available": None if balance is None else balance.available,
                "balance_covers": covered,
            }
        )
    else:
        ctx.say(f"Dry run of {plural(found.inputs, 'input')}: nothing was submitted.")
        ctx.say(f"  accepted   {found.accepted}, with {total_seconds:.1f} s of input video in all")
        if found.tasks != found.accepted:
            ctx.say(
                f"  tasks      {found.tasks}: clips over 10 s are edited in segments of at"
                " most 10 s, a task each"
            )
        if refused:
            ctx.say(f"  refused    {refused} (see the lines above)")
        ctx.say(
            f"  tokens     about {tokens_in + tokens_out:,} ({tokens_in:,} in + {tokens_out:,}"
            f" out, at {INPUT_TOKENS_PER_SECOND:,} per second of video each way)"
        )
        ctx.say(
            f"  credits    roughly {credits:,.1f}: a rough estimate at"
            f" {credits_per_1k_tokens:g} per 1k tokens, a rate inferred from the API's"
            " example; the API's own figure at submission is authoritative"
        )
        if balance is None:
            ctx.say(f"  balance    unknown ({balance_note or 'not read'})")
        else:
            verdict = "covers the estimate" if covered else "does NOT cover the estimate"
            ctx.say(f"  balance    {balance.available:,.1f} credits available: {verdict}")
    return EXIT_OK if not refused else EXIT_FAILED
