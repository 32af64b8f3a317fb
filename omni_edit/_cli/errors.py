"""Errors as the command line tells them: one line, what went wrong and what to do.

Exit statuses: 2 for what the user fixes on the command line or in their setup (bad
arguments, no or wrong key, unsafe base URL, unreadable manifest), 1 for an edit or a
request that failed, 130 for Ctrl-C, 143 for SIGTERM. No message here ever holds the API
key: the SDK's errors never carry it, and these lines add only what the user typed
elsewhere.
"""

from __future__ import annotations

import sqlite3

from .._constants import QUOTA_LIMIT_ADVICE
from .._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    DownloadError,
    InsufficientQuotaError,
    MalformedResponseError,
    NotFoundError,
    OmniEditError,
    PermissionDeniedError,
    RateLimitError,
    ResultExpiredError,
    ServerError,
    StorageError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
    WaitTimeoutError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "UsageError",
    "explain",
    "plural",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class UsageError(Exception):
    """A usage or configuration problem: the message is the whole story (exit 2)."""


def plural(count: int, noun: str) -> str:
    """``1 input``, ``2 inputs``: a count with its noun, in English."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def explain(exc: BaseException, base_url: str) -> tuple[str, int]:
    """The one line to print for ``exc`` and the exit status it calls for."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ValidationError):
        return f"{exc}", EXIT_USAGE
    if isinstance(exc, OmniEditError):
        return _explain_sdk(exc, base_url)
    if isinstance(exc, sqlite3.Error):
        return f"the batch journal failed: {exc} (check the disk, or pass another --journal)", 1
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror or exc}", EXIT_FAILED
    return (
        f"unexpected {type(exc).__name__}: {exc} (run again with --verbose for the details)",
        EXIT_FAILED,
    )


def _explain_sdk(exc: OmniEditError, base_url: str) -> tuple[str, int]:
    if isinstance(exc, StorageError):
        # Credentials, a bucket, an endpoint: the user's setup (docs/storage.md).
        return f"{exc}", EXIT_USAGE
    message, status = _explain_one(exc, base_url)
    if isinstance(exc, APIError) and exc.request_id:
        # What support asks for first (docs/api.md#http-errors).
        message += f" (request id {exc.request_id})"
    return message, status


def _explain_one(exc: OmniEditError, base_url: str) -> tuple[str, int]:
    if isinstance(exc, APIError) and exc.limit is not None:
        # A finer 402/403 code says which limit, and so what to do.
        status = EXIT_USAGE if isinstance(exc, PermissionDeniedError) else EXIT_FAILED
        return (
            f"{QUOTA_LIMIT_ADVICE[exc.limit]} (HTTP {exc.status} {exc.code}: {exc.message})",
            status,
        )
    if isinstance(exc, AuthenticationError):
        return (
            "the API refused the key (HTTP 401): check --api-key or $OMNI_EDIT_API_KEY",
            EXIT_USAGE,
        )
    if isinstance(exc, PermissionDeniedError):
        return "this key has no access to the model (HTTP 403): check the account", EXIT_USAGE
    if isinstance(exc, InsufficientQuotaError):
        return "the account is out of credits (HTTP 402): top it up, then run again", 1
    if isinstance(exc, NotFoundError):
        detail = exc.message.rstrip(".")
        return f"not found (HTTP 404): {detail}: check the task id (tasks expire)", 1
    if isinstance(exc, RateLimitError):
        after = f" (the API asks for {exc.retry_after:g} s)" if exc.retry_after else ""
        return f"still rate limited after retries{after}: try again later", 1
    if isinstance(exc, ServerError):
        return f"the API failed (HTTP {exc.status}) after retries: try again later", 1
    if isinstance(exc, APIError):
        return f"the API refused the request: {exc}", 1
    if isinstance(exc, APITimeoutError):
        return f"{base_url} did not answer in time: check the network, or try later", 1
    if isinstance(exc, APIConnectionError):
        detail = str(exc) if base_url in str(exc) else f"could not reach {base_url}: {exc}"
        return f"{detail} (check the network, or --base-url)", 1
    if isinstance(exc, SubmissionUncertainError):
        key = f" (Idempotency-Key {exc.idempotency_key})" if exc.idempotency_key else ""
        return (
            f"the create request was sent but no answer came back{key}: a task may exist"
            " and be billed; look for it before submitting again",
            1,
        )
    if isinstance(exc, TaskFailedError):
        hint = "the same edit may succeed later" if exc.retryable else "resubmitting will not help"
        return f"{exc} ({hint})", 1
    if isinstance(exc, WaitTimeoutError):
        return f"{exc}: the task goes on; run `omni-edit wait` again later", 1
    if isinstance(exc, ResultExpiredError):
        return f"{exc}: the result link has expired; submit the edit again", 1
    if isinstance(exc, DownloadError):
        return f"the result could not be saved: {exc}", 1
    if isinstance(exc, MalformedResponseError):
        return f"the API answered in an unexpected shape: {exc} (please report it)", 1
    return str(exc), 1
