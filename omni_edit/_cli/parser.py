"""The ``omni-edit`` argument parser (argparse: in the stdlib, so no startup cost).

Global options are accepted before or after the command (``omni-edit --json batch m.csv``
and ``omni-edit batch m.csv --json``): each subparser repeats them with suppressed
defaults, so a subparser never overwrites what was given before the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._constants import CREDITS_PER_1K_TOKENS_ESTIMATE
from .._models import TaskStatus
from .._version import __version__
from .batch_command import DEFAULT_CONCURRENCY

__all__ = ["build_parser"]

_BATCH_EPILOG = """\
manifest:
  CSV (.csv) with a header row naming the columns, or JSON Lines (.jsonl, one object
  per line) with the same keys: video_url (or video) and prompt (required), callback_url
  and output (optional). A video_url may be a local path, relative to the manifest's
  folder and inside it (or absolute): it is uploaded to --storage first. An output is
  a file name or a relative path under --out-dir (never '..', '~' or an absolute path);
  rows without one get a name from their input. A bad row is reported with its line
  number, skipped, and keeps its place: fix it and rerun, and the rest resumes.

folder:
  With --prompt, every *.mp4 in the folder (--glob to choose) is one input, in name
  order, uploaded to --storage first (docs/storage.md).

resuming:
  The journal records every input's task. Run the same command again, after a crash or
  Ctrl-C, to resume: nothing done is redone and nothing submitted is submitted twice.

exit status:
  0 every input completed, 1 some did not, 2 usage or configuration error, 130 Ctrl-C,
  143 SIGTERM (which, like Ctrl-C, keeps the journal and says how to resume).
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=default(None),
        help="API key (default: $OMNI_EDIT_API_KEY; prefer the variable, which other"
        " users cannot see in the process list)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help="API base URL (default: $OMNI_EDIT_BASE_URL, else https://api.evolink.ai)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON object per line on stdout",
    )
    group.add_argument(
        "--no-replay-creates",
        dest="replay_creates",
        action="store_false",
        default=default(True),
        help="for a deployment that ignores Idempotency-Key: never resend a create whose"
        " answer was lost (it is reported uncertain instead)",
    )
    group.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default(False),
        help="log requests and show tracebacks of errors",
    )


class _Commands:
    """The subcommands, each with the global options repeated (see the module doc)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        self, name: str, help: str, description: str, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        sub = self._subparsers.add_parser(
            name,
            help=help,
            description=description,
            epilog=epilog,
            allow_abbrev=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_options(sub, suppress=True)
        return sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omni-edit",
        # No abbreviated options: "--api" must not quietly mean --api-key.
        allow_abbrev=False,
        description="Edit videos with the Gemini Omni Flash video-edit API.",
        epilog="Try it without a key: omni-edit demo",
    )
    _add_global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = _Commands(parser)
    _add_edit(commands)
    _add_batch(commands)
    status = commands.add(
        "status",
        "show a task's state, or a shared batch's progress",
        "Read a task once and show it; or, with --journal postgresql://…, show the whole"
        " shared batch's progress (from any host).",
    )
    status.add_argument("task_id", metavar="TASK_ID", nargs="?")
    status.add_argument(
        "--journal", metavar="URL", help="a shared journal (postgresql://…): its batch's progress"
    )
    status.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="with --journal: write the batch's report, one row per finished input",
    )
    _add_worker(commands)
    wait = commands.add(
        "wait",
        "wait for a task and save its result",
        "Wait for a task to end; save its result with --out, else print its link.",
    )
    wait.add_argument("task_id", metavar="TASK_ID")
    wait.add_argument("--out", type=Path, metavar="FILE", help="where to save the result")
    _add_force(wait)
    _add_account(commands)
    _add_emulator(commands)
    demo = commands.add(
        "demo",
        "run a batch of two dozen edits on sample clips (no key needed)",
        "Start the emulator in-process, make sample clips, and run a real batch on them.",
    )
    demo.add_argument(
        "--out-dir",
        type=Path,
        default=Path("omni-edit-demo"),
        metavar="DIR",
        help="where the clips, manifest and results go (default %(default)s)",
    )
    return parser


def _add_storage(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--storage",
        metavar="s3://BUCKET/PREFIX",
        help="where local clips are uploaded (default: $OMNI_EDIT_STORAGE); credentials"
        " from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; needs omni-edit[s3]",
    )
    command.add_argument(
        "--storage-endpoint",
        metavar="URL",
        help="the S3-compatible endpoint (R2, MinIO...; default:"
        " $OMNI_EDIT_STORAGE_ENDPOINT, $AWS_ENDPOINT_URL_S3, else AWS)",
    )


def _add_force(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--force", action="store_true", help="overwrite the --out file if it exists"
    )


def _add_edit(commands: _Commands) -> None:
    edit = commands.add(
        "edit",
        "edit one clip and save the result",
        "Submit one edit, show its progress, and save the result.",
    )
    edit.add_argument(
        "video_url",
        metavar="VIDEO",
        help="an mp4 of at most 10 s: an http(s) URL, or a local file (uploaded to --storage)",
    )
    edit.add_argument("--prompt", required=True, help="what to change, and what to keep")
    edit.add_argument(
        "--out", type=Path, metavar="FILE", help="where to save (default: named after the input)"
    )
    edit.add_argument("--callback-url", metavar="URL", help="https URL the API calls when done")
    _add_storage(edit)
    _add_split(edit)
    _add_force(edit)
    edit.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="do not read the clip's header before submitting it (preflight refuses a"
        " clip over 10 s or not mp4 before it costs anything)",
    )


def _add_split(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-split",
        dest="split",
        action="store_false",
        help="refuse a clip over 10 s instead of editing it in segments of at most"
        " 10 s stitched into one file (which needs --storage and the media extra)",
    )


def _add_batch(commands: _Commands) -> None:
    batch = commands.add(
        "batch",
        "edit every clip of a CSV or JSONL manifest, or of a folder, resumably",
        "Edit every input of MANIFEST (or every clip in a folder), showing progress,"
        " saving results, resumable.",
        _BATCH_EPILOG,
    )
    batch.add_argument(
        "manifest", metavar="MANIFEST", type=Path, help="CSV or JSONL file, or a folder of clips"
    )
    batch.add_argument(
        "--prompt", help="with a folder: the prompt for every clip in it (required then)"
    )
    batch.add_argument(
        "--glob",
        default="*.mp4",
        metavar="PATTERN",
        help="with a folder: which files are clips (default %(default)s; '**/*.mp4' for"
        " subfolders too)",
    )
    _add_storage(batch)
    _add_split(batch)
    batch.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help="where results go (default: <manifest name>-results/ beside the manifest)",
    )
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="edits open at once (default %(default)s)",
    )
    batch.add_argument(
        "--journal",
        metavar="FILE|URL",
        help="resume journal (default: <manifest>.journal.sqlite beside the manifest); a"
        " postgresql:// URL loads the batch there, for workers on other hosts to join",
    )
    _add_account_concurrency(batch)
    batch.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help=(
            "with --no-replay-creates: resubmit inputs whose create request's answer was"
            " lost (may pay twice)"
        ),
    )
    batch.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write one row per input (.csv; .html: a page with players to watch; else JSONL)",
    )
    batch.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="do not read each clip's header before submitting it (preflight refuses"
        " clips over 10 s or not mp4 before they cost anything)",
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="probe every input and estimate tokens and credits, beside the balance;"
        " submit nothing",
    )
    batch.add_argument(
        "--ignore-balance",
        action="store_true",
        help="submit even when the balance does not cover the credit estimate (the"
        " balance is checked before anything is submitted, by probing every clip)",
    )
    batch.add_argument(
        "--credits-per-1k-tokens",
        type=_positive_float,
        default=CREDITS_PER_1K_TOKENS_ESTIMATE,
        metavar="X",
        help="credit rate for --dry-run's rough estimate (default %(default)s, inferred"
        " from the API's documented example)",
    )


def _add_account(commands: _Commands) -> None:
    commands.add(
        "balance",
        "show the credits left",
        "Show the account's and this key's credits, remaining and used.",
    )
    tasks = commands.add(
        "tasks",
        "list the account's recent tasks",
        "List the account's tasks of this model, newest first (no result links: use"
        " `omni-edit status TASK_ID` for one task's).",
    )
    tasks.add_argument(
        "--status",
        choices=[s.value for s in TaskStatus],
        help="only tasks in this state",
    )
    tasks.add_argument(
        "--limit",
        type=_positive_int,
        default=50,
        metavar="N",
        help="show at most N tasks (default %(default)s)",
    )


def _add_account_concurrency(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--account-concurrency",
        type=_positive_int,
        metavar="N",
        help="with a postgresql:// journal: requests in flight for the whole account, shared"
        " by every worker on the batch (kept in the journal)",
    )


def _add_worker(commands: _Commands) -> None:
    worker = commands.add(
        "worker",
        "join a batch in a shared journal and work it until it is done",
        "Join the batch that `omni-edit batch MANIFEST --journal postgresql://…` loaded,"
        " and work its inputs with the other workers until the whole batch is done.",
    )
    worker.add_argument("--journal", required=True, metavar="URL", help="postgresql://…")
    worker.add_argument(
        "--out-dir", required=True, type=Path, metavar="DIR", help="where results go"
    )
    worker.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="edits open at once (default %(default)s)",
    )
    _add_account_concurrency(worker)
    worker.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="do not read each clip's header before submitting it",
    )


def _add_emulator(commands: _Commands) -> None:
    emulator = commands.add(
        "emulator",
        "serve a local emulator of the API until Ctrl-C",
        "Serve a local emulator of the API (and its result host) until Ctrl-C. Any"
        " non-empty key is accepted, unless --api-key names the one key to accept.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="API address (default %(default)s)")
    emulator.add_argument("--port", type=int, default=8787, help="API port (default %(default)s)")
    emulator.add_argument(
        "--result-host",
        default="127.0.0.2",
        help="address serving result files, another origin (default %(default)s; where"
        " it does not exist, as on macOS, 127.0.0.1 on another port)",
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
        "--credits",
        type=float,
        default=1e9,
        metavar="X",
        help="the account's starting balance; creates it cannot cover get HTTP 402"
        " (default: a billion)",
    )
    emulator.add_argument(
        "--estimate",
        choices=("given", "zero", "absent"),
        default="given",
        help="what task_info.estimated_time holds: the estimate, 0, or nothing (default"
        " %(default)s)",
    )
    emulator.add_argument(
        "--batch-reads",
        choices=("on", "404", "405"),
        default="on",
        help="serve POST /v1/tasks/batch, or play a deployment that answers it 404 or 405"
        " (default %(default)s)",
    )
    emulator.add_argument(
        "--allow-http-callbacks",
        action="store_true",
        help="accept http:// and loopback callback URLs (the real API refuses them)",
    )
