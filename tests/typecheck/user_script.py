"""A user's script, as someone who installed omni-edit would write it.

Not a test: ``.ci/run`` copies it into a fresh temporary folder and runs
``mypy --strict`` on it there, so mypy finds ``omni_edit`` as a user's mypy would,
through the installed package and its ``py.typed`` (the editable install included),
never through the current folder. pytest does not collect it (its name does not start
with ``test_``) and importing it runs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import omni_edit
from omni_edit import EditOutcome, EditRequest, Task

OUT = Path("edited")
PROMPT = "Make the lighting warmer and keep everything else unchanged"


def show(task: Task) -> None:
    print(f"{task.id}: {task.status.value} {task.progress}%")


async def edit_one(client: omni_edit.Client, video_url: str) -> Path | None:
    """One clip, end to end; None when it cannot be known or did not work."""
    try:
        task = await client.submit(video_url, PROMPT, preflight=True)
    except omni_edit.ValidationError as exc:
        print(f"not sent ({exc.field}): {exc}", file=sys.stderr)
        return None
    except omni_edit.SubmissionUncertainError as exc:
        # Sent, answer lost: a task may exist and be billed. Do not resend blindly.
        print(f"unknown whether {exc.video_url} was submitted: {exc}", file=sys.stderr)
        return None
    try:
        done = await client.wait(task, timeout=600, on_progress=show)
    except omni_edit.TaskFailedError as exc:
        print(f"{exc.task.id} failed ({exc.code}): {exc}", file=sys.stderr)
        return None
    except omni_edit.WaitTimeoutError as exc:
        last = exc.task.status.value if exc.task is not None else "never seen"
        print(f"gave up waiting (last {last})", file=sys.stderr)
        return None
    return await client.download(done, OUT / f"{done.id}.mp4")


def requests(urls: list[str]) -> Iterator[EditRequest]:
    for url in urls:
        yield EditRequest(video_url=url, prompt=PROMPT)


async def edit_all(client: omni_edit.Client, urls: list[str]) -> list[EditOutcome]:
    """Many clips, resumable, stopping at the first sign of an exhausted quota."""
    outcomes: list[EditOutcome] = []
    batch = client.edit_many(
        requests(urls), concurrency=8, download_dir=OUT, journal=OUT / "journal.sqlite"
    )
    async with contextlib.aclosing(batch):
        async for outcome in batch:
            outcomes.append(outcome)
            if isinstance(outcome.error, omni_edit.InsufficientQuotaError):
                break  # aclosing stops submissions and polling here, not later
            if outcome.ok and outcome.path is not None:
                print(f"#{outcome.index} saved to {outcome.path}")
    return outcomes


async def edit_folder(folder: Path) -> int:
    """Local clips, uploaded to the user's own storage first (omni-edit[s3])."""
    storage = omni_edit.S3Storage("my-bucket", "omni-inputs", region="eu-west-1")
    async with omni_edit.Client(storage=storage, storage_url_seconds=3 * 3600) as client:
        stored: omni_edit.StoredClip = await client.upload(folder / "first.mp4")
        print(f"{stored.sha256[:12]} {'uploaded' if stored.uploaded else 'stored already'}")
        try:
            await client.submit(folder / "first.mp4", PROMPT)
        except omni_edit.StorageError as exc:
            print(f"the storage refused: {exc}", file=sys.stderr)
            return 1
        batch = client.edit_many([(clip, PROMPT) for clip in sorted(folder.glob("*.mp4"))])
        async with contextlib.aclosing(batch):
            return 0 if all([o.ok async for o in batch]) else 1


async def main(urls: list[str]) -> int:
    print(f"omni_edit {omni_edit.__version__}")
    async with omni_edit.Client(max_concurrency=8) as client:
        if len(urls) == 1:
            return 0 if await edit_one(client, urls[0]) is not None else 1
        outcomes = await edit_all(client, urls)
    failed = [o for o in outcomes if not o.ok]
    return 1 if failed or len(outcomes) < len(urls) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
