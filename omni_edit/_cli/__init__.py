"""The ``omni-edit`` command line.

::

    omni-edit edit VIDEO_URL --prompt TEXT [--out FILE]   one clip, saved
    omni-edit batch MANIFEST [--report FILE] [--dry-run]  a CSV/JSONL of clips, resumable
    omni-edit status TASK_ID | wait TASK_ID [--out FILE]  one task
    omni-edit balance | tasks [--status S]                the account's credits and tasks
    omni-edit worker --journal URL --out-dir DIR          join a shared batch (PostgreSQL)
    omni-edit status --journal URL [--report FILE]        a shared batch's progress
    omni-edit emulator                                    the local emulator of the API
    omni-edit demo                                        all of it, no key needed
    omni-edit --version                                   the installed version

``python -m omni_edit`` runs the same command line (``omni_edit/__main__.py``).

This is the edge of the package: nothing in the SDK imports it, and it drives the SDK
through ``Client``'s public methods only (it may import helpers from lower layers, such
as the manifest's URL checks, but never touches another module's private names).
Errors are told in one line on stderr (see ``errors``), with a traceback only under
``--verbose``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
import traceback
from collections.abc import Coroutine, Sequence
from typing import Any

from .._batch.postgres_journal import redact_dsn
from .account_commands import run_balance, run_tasks
from .batch_command import BatchSettings, run_batch
from .context import Context
from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, UsageError, explain
from .parser import build_parser
from .shared_batch import WorkerSettings, is_shared, run_batch_status, run_worker
from .streams import put
from .task_commands import run_edit, run_status, run_wait

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit
    status: 0 success, 1 a failed edit or request, 2 usage or configuration, 130 Ctrl-C,
    143 SIGTERM.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)
    if args.command == "emulator":
        return _emulator(args)
    ctx = Context(
        api_key=args.api_key,
        base_url=args.base_url,
        json=args.json,
        verbose=args.verbose,
        replay_creates=args.replay_creates,
        storage=getattr(args, "storage", None),
        storage_endpoint=getattr(args, "storage_endpoint", None),
    )
    if args.verbose:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("omni_edit").setLevel(logging.DEBUG)
    try:
        return asyncio.run(_until_terminated(ctx, _dispatch(ctx, args, args_list)))
    except KeyboardInterrupt:
        ctx.note(ctx.on_interrupt or "Interrupted.")
        return EXIT_INTERRUPTED
    except Exception as exc:
        message, status = explain(exc, ctx.effective_base_url)
        if ctx.verbose:
            traceback.print_exc()
        ctx.note(f"omni-edit: error: {message}")
        if ctx.json:
            ctx.emit({"event": "error", "error": type(exc).__name__, "message": message})
        return status


async def _until_terminated(ctx: Context, work: Coroutine[Any, Any, int]) -> int:
    """Run ``work``; SIGTERM (a service manager, a CI timeout, ``kill``) stops it as
    Ctrl-C does: the work is cancelled, so journals and reports are closed in order, and
    the user is told what Ctrl-C would tell them (how to resume). Exit status 143."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if main is not None:
            main.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError):  # Windows: no handlers on the loop
        return await work
    try:
        return await work
    except asyncio.CancelledError:
        if not terminated:
            raise
        ctx.note(ctx.on_interrupt or "Interrupted.")
        return EXIT_TERMINATED
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _dispatch(ctx: Context, args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "edit":
        return await run_edit(
            ctx,
            args.video_url,
            args.prompt,
            out=args.out,
            callback_url=args.callback_url,
            preflight=args.preflight,
            force=args.force,
            split=args.split,
        )
    if args.command == "status":
        if args.journal is not None:
            if args.task_id is not None:
                raise UsageError("status takes a TASK_ID or --journal, not both")
            return await run_batch_status(ctx, args.journal, args.report)
        if args.task_id is None:
            raise UsageError("status needs a TASK_ID (or --journal postgresql://… for a batch)")
        return await run_status(ctx, args.task_id)
    if args.command == "worker":
        worker = WorkerSettings(
            journal=args.journal,
            out_dir=args.out_dir,
            concurrency=args.concurrency,
            account_concurrency=args.account_concurrency,
            preflight=args.preflight,
        )
        return await run_worker(ctx, worker)
    if args.command == "wait":
        return await run_wait(ctx, args.task_id, out=args.out, force=args.force)
    if args.command == "balance":
        return await run_balance(ctx)
    if args.command == "tasks":
        return await run_tasks(ctx, status=args.status, limit=args.limit)
    if args.command == "batch":
        settings = BatchSettings(
            manifest=args.manifest,
            out_dir=args.out_dir,
            concurrency=args.concurrency,
            journal=args.journal,
            report=args.report,
            resubmit_uncertain=args.resubmit_uncertain,
            preflight=args.preflight,
            dry_run=args.dry_run,
            ignore_balance=args.ignore_balance,
            credits_per_1k_tokens=args.credits_per_1k_tokens,
            rerun=_rerun_command(argv),
            account_concurrency=args.account_concurrency,
            prompt=args.prompt,
            glob=args.glob,
            split=args.split,
        )
        return await run_batch(ctx, settings)
    from .demo import run_demo

    return await run_demo(ctx, args.out_dir)


def _rerun_command(argv: list[str]) -> str:
    """The command line again, for the resume hint, without the API key: a key on a
    screen or in a log is a leaked key. It is dropped, and the user told to pass it."""
    kept: list[str] = []
    dropped = False
    hidden = False
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--api-key":
            dropped = skip = True
        elif arg.startswith("--api-key="):
            dropped = True
        else:
            # A journal's URL without its password (shown as ***).
            shown = redact_dsn(arg) if is_shared(arg) else arg
            hidden = hidden or ("***" in shown and "***" not in arg)
            kept.append(shown)
    command = shlex.join(["omni-edit", *kept])
    if hidden:
        command += " (with the journal's password for ***)"
    return command + (" (with your API key, as before)" if dropped else "")


def _emulator(args: argparse.Namespace) -> int:
    from .emulator_command import serve_emulator

    try:
        return asyncio.run(serve_emulator(args))
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        return 0
    except ValueError as exc:
        put(sys.stderr, f"omni-edit emulator: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        put(sys.stderr, f"omni-edit emulator: cannot listen: {exc}")
        return 1
