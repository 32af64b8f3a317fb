"""``omni-edit balance`` and ``omni-edit tasks``: the account as the gateway shows it
(docs/api.md#gateway-extras)."""

from __future__ import annotations

from typing import Any

from .._constants import USD_PER_CREDIT_DISPLAY
from .._models import Balance, Task
from .context import Context
from .errors import EXIT_OK
from .task_commands import task_json

__all__ = ["balance_json", "run_balance", "run_tasks"]


def balance_json(balance: Balance) -> dict[str, Any]:
    """A balance as the CLI prints it with ``--json``."""
    return {
        "remaining_credits": balance.remaining_credits,
        "used_credits": balance.used_credits,
        "key_remaining_credits": balance.key_remaining_credits,
        "key_used_credits": balance.key_used_credits,
        "key_unlimited": balance.key_unlimited,
        "available": balance.available,
    }


def _credits(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.2f}"


async def run_balance(ctx: Context) -> int:
    """Read the balance once and print it."""
    async with ctx.open_client() as client:
        balance = await client.balance()
    if ctx.json:
        ctx.emit(balance_json(balance))
        return EXIT_OK
    usd = balance.remaining_credits * USD_PER_CREDIT_DISPLAY
    ctx.say(
        f"account  {_credits(balance.remaining_credits)} credits remaining"
        f" (about ${usd:,.2f}), {_credits(balance.used_credits)} used"
    )
    if balance.key_unlimited:
        limit = "no limit of its own"
    else:
        limit = f"{_credits(balance.key_remaining_credits)} credits remaining"
    ctx.say(f"key      {limit}, {_credits(balance.key_used_credits)} used")
    ctx.say(f"available to this key: {_credits(balance.available)} credits")
    return EXIT_OK


def _row(task: Task) -> tuple[str, ...]:
    created = task.created.strftime("%Y-%m-%d %H:%M:%S") if task.created else "-"
    usage = task.usage
    credits = None
    if usage is not None:
        credits = usage.credits_used if usage.credits_used is not None else usage.credits_reserved
    return (
        task.id,
        task.status.value,
        f"{task.progress}%",
        created,
        "-" if credits is None else f"{credits:g}",
    )


async def run_tasks(ctx: Context, *, status: str | None, limit: int) -> int:
    """List the account's newest tasks (at most ``limit``), as a table or JSON lines."""
    rows: list[tuple[str, ...]] = []
    shown = 0
    async with ctx.open_client() as client:
        # No more pages are read than the limit needs.
        listing = client.list_tasks(status=status, page_size=min(limit, 100))
        try:
            async for task in listing:
                if ctx.json:
                    created = int(task.created.timestamp()) if task.created else None
                    ctx.emit({**task_json(task), "created": created})
                else:
                    rows.append(_row(task))
                shown += 1
                if shown >= limit:
                    break
        finally:
            await listing.aclose()
    if ctx.json:
        return EXIT_OK
    if not rows:
        ctx.say("no tasks" + (f" with status {status}" if status else ""))
        return EXIT_OK
    header = ("TASK", "STATUS", "PROGRESS", "CREATED (UTC)", "CREDITS")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        ctx.say("  ".join(cells).rstrip())
    return EXIT_OK
