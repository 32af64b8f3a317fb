"""``omni-edit edit``, ``status`` and ``wait``: one task at a time.

While a task runs, a terminal shows one status line redrawn in place; anywhere else a
line is printed when the status changes or the progress passes another quarter, so a
log stays short and free of carriage returns. ``--json`` prints only the final object.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._batch.inputs import output_name
from .._client import Client
from .._constants import MAX_VIDEO_SECONDS
from .._media.storage import is_local_clip
from .._models import EditRequest, Task, Usage
from .context import Context
from .errors import EXIT_OK, UsageError
from .streams import put

__all__ = ["run_edit", "run_status", "run_wait", "task_json"]


def task_json(task: Task) -> dict[str, Any]:
    """A task as the CLI prints it with ``--json``: the fields a script needs."""
    return {
        "task_id": task.id,
        "status": task.status.value,
        "progress": task.progress,
        "result_url": task.result_url,
        "error_code": task.error.code if task.error else None,
        "error_message": task.error.message if task.error else None,
        "estimated_time": task.estimated_time,
        "credits": task.usage.credits_reserved if task.usage else None,
        "credits_used": task.usage.credits_used if task.usage else None,
    }


class StatusLine:
    """The live line of one task, on stderr."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        self._live = stream.isatty()
        self._last: tuple[str, int] | None = None
        self._width = 0

    def show(self, task: Task) -> None:
        if self._quiet:
            return
        text = f"{task.id}  {task.status.value:<10} {task.progress:>3}%"
        if self._live:
            # Pad over the previous text: a shorter line would leave its tail behind.
            put(self._stream, "\r" + text.ljust(self._width), end="")
            self._width = len(text)
            return
        state = (task.status.value, task.progress // 25)
        if state != self._last:
            put(self._stream, text)
        self._last = state

    def close(self) -> None:
        if self._live and self._width:
            put(self._stream)
            self._width = 0


async def run_edit(
    ctx: Context,
    video_url: str,
    prompt: str,
    *,
    out: Path | None,
    callback_url: str | None,
    preflight: bool = True,
    force: bool = False,
    split: bool = True,
) -> int:
    """Submit one edit, wait for it and save the result (default: a file in the current
    folder named after the input). With ``preflight`` (the default, as for ``batch``)
    the clip's header is read first, so a clip the API would refuse costs nothing. SDK
    errors propagate for ``main`` to explain. An existing file at the destination is a
    ``UsageError`` unless ``force``, found before anything is billed. A clip over 10 s
    (a URL one found so by preflight) is edited in segments and stitched at ``dest``
    unless not ``split``
    (docs/media.md#long-clips)."""
    dest = out or Path(output_name(EditRequest(video_url, prompt, callback_url)))
    # In a folder, the file is named after the task, which does not exist yet.
    _refuse_to_overwrite(dest, force=force)
    async with ctx.open_client() as client:
        info = None
        if split and (preflight or is_local_clip(video_url)):
            # A clip URL's length is learned by preflight's read: without it the API
            # judges the clip.
            info = await client.probe(video_url)
            if info.duration > MAX_VIDEO_SECONDS:
                return await _edit_long(
                    ctx, client, EditRequest(video_url, prompt, callback_url), dest
                )
        task = await client.submit(
            video_url, prompt, callback_url=callback_url, preflight=preflight and info is None
        )
        ctx.on_interrupt = (
            f"Interrupted; task {task.id} goes on. Save its result later with:"
            f" omni-edit wait {task.id} --out {shlex.quote(str(dest))}"
        )
        return await _finish(ctx, client, task, dest)


async def _edit_long(ctx: Context, client: Client, request: EditRequest, dest: Path) -> int:
    """A clip over 10 s: its segments edited one after another through ``edit_many``
    (without a journal: an interrupted run starts over), stitched at ``dest``. With
    ``preflight``, so that a URL clip is measured (and split) there too."""
    if await anyio.Path(dest).is_dir():
        dest = dest / output_name(request)
    if not ctx.json:
        ctx.note(f"{request.video_url} is over 10 s: editing it in segments of at most 10 s")
    async with contextlib.aclosing(
        client.edit_many([request], destination=lambda *_: dest, concurrency=1, preflight=True)
    ) as outcomes:
        outcome = await anext(outcomes)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.task is not None
    assert outcome.path is not None
    if ctx.json:
        ctx.emit(
            {
                **task_json(outcome.task),
                "output": str(outcome.path),
                "segments": [task.id for task in outcome.segments],
            }
        )
    else:
        ctx.say(f"saved {outcome.path} ({len(outcome.segments)} segments stitched)")
    return EXIT_OK


async def run_status(ctx: Context, task_id: str) -> int:
    """Read the task once and print it."""
    async with ctx.open_client() as client:
        task = await client.get(task_id)
    if ctx.json:
        ctx.emit(task_json(task))
        return EXIT_OK
    ctx.say(f"{task.id}  {task.status.value}  {task.progress}%")
    if task.error is not None:
        ctx.say(f"  error    {task.error.code}: {task.error.message}")
    if task.result_url is not None:
        ctx.say(f"  result   {task.result_url}")
        ctx.say("           (valid 24 hours after completion: save it with `omni-edit wait`)")
    usage = task.usage
    if usage is not None and usage.credits_used is not None:
        ctx.say(f"  credits  {usage.credits_used:g} charged")
    elif usage is not None and usage.credits_reserved is not None:
        ctx.say(f"  credits  {usage.credits_reserved:g}")
    return EXIT_OK


async def run_wait(ctx: Context, task_id: str, *, out: Path | None, force: bool = False) -> int:
    """Wait for the task to end; save the result at ``out`` if given (an existing file
    only with ``force``), else print its link. A failed task raises ``TaskFailedError``
    for ``main`` to explain (exit 1)."""
    if out is not None:
        # In a folder, the file is named after the task (see ``Client.download``).
        _refuse_to_overwrite(out, force=force, name_in_folder=f"{task_id}.mp4")
    async with ctx.open_client() as client:
        task = await client.get(task_id)
        return await _finish(ctx, client, task, out)


def _refuse_to_overwrite(dest: Path, *, force: bool, name_in_folder: str | None = None) -> None:
    """``UsageError`` when saving at ``dest`` would replace a file, unless ``force``.
    ``name_in_folder`` is the name the result takes when ``dest`` is a folder, if known."""
    if force:
        return
    if dest.is_dir():
        if name_in_folder is None:
            return
        dest = dest / name_in_folder
    if dest.exists() or dest.is_symlink():
        raise UsageError(
            f"{dest} already exists: pass --force to overwrite it, or choose another --out"
        )


async def _finish(ctx: Context, client: Client, task: Task, dest: Path | None) -> int:
    line = StatusLine(ctx.err, quiet=ctx.json)
    line.show(task)
    try:
        done = await client.wait(task, on_progress=line.show)
    finally:
        line.close()
    path = await client.download(done, dest) if dest is not None else None
    ctx.on_interrupt = None
    if ctx.json:
        # A task read back may omit usage; the one from the create request had it.
        credits = (done.usage or task.usage or Usage()).credits_reserved
        ctx.emit({**task_json(done), "credits": credits, "output": str(path) if path else None})
    elif path is not None:
        ctx.say(f"saved {path}")
    else:
        ctx.say(f"{done.id} completed: {done.result_url}")
    return EXIT_OK
