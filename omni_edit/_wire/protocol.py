"""The API's protocol with no I/O: what to send, what an answer means, whether to retry.

The transport feeds this module statuses, headers, bodies and failures; everything here
is a pure function and is tested without a network (the gidgethub ``sansio`` habit).
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import attrs
import cattrs

from .._constants import (
    CREATE_PATH,
    CREDITS_PATH,
    IDEMPOTENCY_CONFLICT_CODE,
    MODEL,
    PAID_OUTCOME_UNKNOWN_CODE,
    REQUEST_ID_HEADERS,
    REQUEST_ID_MAX_LENGTH,
    TASK_PATH_PREFIX,
    TASKS_PATH,
)
from .._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    IdempotencyConflictError,
    InsufficientQuotaError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
)
from .._models import Balance, Task, TaskStatus
from .convert import (
    TaskPage,
    converter,
    decode_json,
    excerpt,
    structure_balance,
    structure_task,
    structure_task_page,
)

__all__ = [
    "Attempt",
    "Verdict",
    "create_request",
    "credits_request",
    "error_from_response",
    "judge",
    "new_idempotency_key",
    "parse_balance_response",
    "parse_retry_after",
    "parse_task_page",
    "parse_task_response",
    "request_id",
    "task_list_request",
    "task_request",
]


@attrs.frozen
class ApiRequest:
    """One API call. ``idempotency_key`` goes out as the ``Idempotency-Key`` header: a
    POST that carries one may be replayed, since the gateway answers a repeated key with
    the original task instead of creating another (docs/api.md#idempotency-keys)."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    idempotency_key: str | None = None
    # A POST that only reads (the batch read of docs/api.md#batch-reads): as safe to
    # send again as a GET.
    read_only: bool = False

    @property
    def idempotent(self) -> bool:
        """Safe to send again whatever became of the last attempt (by the method)."""
        return self.read_only or self.method in ("GET", "HEAD")


def new_idempotency_key() -> str:
    """A fresh key for one paid intent: 32 random URL-safe characters (192 bits) behind
    a prefix that says whose it is, within the gateway's 16-96 of ``[A-Za-z0-9._-]``."""
    return "oe-" + secrets.token_urlsafe(24)


def create_request(
    video_url: str, prompt: str, callback_url: str | None, idempotency_key: str | None = None
) -> ApiRequest:
    """The create call for already validated inputs."""
    body: dict[str, Any] = {"model": MODEL, "prompt": prompt, "video_urls": [video_url]}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return ApiRequest("POST", CREATE_PATH, body, idempotency_key)


def task_request(task_id: str) -> ApiRequest:
    """The query call for an already validated task id, percent-encoded into one path
    segment (``:`` becomes ``%3A``): whatever the id, the path stays the task's."""
    return ApiRequest("GET", TASK_PATH_PREFIX + quote(task_id, safe=""))


def parse_task_response(status: int, body: bytes, *, task_id: str | None = None) -> Task:
    """A 2xx answer's task object, or ``MalformedResponseError``.

    ``task_id`` is the id that was asked for: an answer about another task is malformed,
    since delivering it would end another task's waits with results nobody asked for.
    """
    task = structure_task(decode_json(body, status=status), status=status)
    if task_id is not None and task.id != task_id:
        raise MalformedResponseError(
            f"asked for task {task_id} and the API answered with task {task.id}",
            field="id",
            status=status,
            excerpt=excerpt(body),
        )
    return task


def credits_request() -> ApiRequest:
    """The balance call (docs/api.md#gateway-extras)."""
    return ApiRequest("GET", CREDITS_PATH)


def parse_balance_response(status: int, body: bytes) -> Balance:
    """A 2xx answer's balance, or ``MalformedResponseError``."""
    return structure_balance(decode_json(body, status=status), status=status)


def task_list_request(page: int, page_size: int, status: TaskStatus | None) -> ApiRequest:
    """One page of the account's tasks of this model, newest first; ``page`` from 1 and
    ``page_size`` already checked."""
    query = f"?model={quote(MODEL, safe='')}&page={page}&page_size={page_size}"
    if status is not None:
        query += f"&status={status.value}"
    return ApiRequest("GET", TASKS_PATH + query)


def parse_task_page(status: int, body: bytes) -> TaskPage:
    """A 2xx answer's page of tasks, or ``MalformedResponseError``."""
    return structure_task_page(decode_json(body, status=status), status=status)


def request_id(headers: Mapping[str, str]) -> str | None:
    """The answer's request id (``x-request-id``, else ``x-oneapi-request-id``), or
    ``None`` when absent or not a plausible id: it is quoted in messages and logs, so
    only printable ASCII of bounded length is kept."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip()
        if 0 < len(value) <= REQUEST_ID_MAX_LENGTH and value.isascii() and value.isprintable():
            return value
    return None


# --- Errors ------------------------------------------------------------------------------

_ERROR_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientQuotaError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    429: RateLimitError,
}
_RETRY_HINT = re.compile(r"retry\s+after\s+(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?)?\b", re.I)


@attrs.frozen
class _ErrorBody:
    message: str = ""
    code: str | int | None = None
    type: str | None = None
    param: str | None = None
    fallback_suggestion: str | None = None
    # Figures a 402/403 body may add (docs/api.md#http-errors).
    estimated_credits: float | None = None
    account_balance_credits: float | None = None
    remaining_credits: float | None = None


_FIGURES = frozenset({"estimated_credits", "account_balance_credits", "remaining_credits"})


def _figures(body: _ErrorBody) -> str:
    """The credit figures of a refusal, in words, or ``""``."""
    parts = []
    if body.estimated_credits is not None:
        parts.append(f"this needs about {body.estimated_credits:g} credits")
    balance = body.account_balance_credits
    if balance is None:
        balance = body.remaining_credits
    if balance is not None:
        parts.append(f"{balance:g} left")
    return f" ({'; '.join(parts)})" if parts else ""


def _error_class(status: int) -> type[APIError]:
    if status in _ERROR_CLASSES:
        return _ERROR_CLASSES[status]
    return ServerError if status >= 500 else APIError


def _parse_error_body(body: bytes) -> _ErrorBody | None:
    try:
        data = decode_json(body)
    except MalformedResponseError:
        return None
    inner = data.get("error") if isinstance(data, Mapping) else None
    if not isinstance(inner, Mapping):
        return None
    names = attrs.fields_dict(_ErrorBody).keys() - _FIGURES
    fields = {k: v for k, v in inner.items() if k in names and v is not None}
    try:
        parsed = converter.structure(fields, _ErrorBody)
    except (cattrs.BaseValidationError, TypeError, ValueError):
        return None
    # Figures are extras: one of the wrong type is dropped, not the whole body. They
    # may sit in ``error`` or beside it.
    figures: dict[str, Any] = {}
    for name in _FIGURES:
        value = inner.get(name, data.get(name))
        try:
            figures[name] = converter.structure(value, float)
        except (TypeError, ValueError):
            continue
    return attrs.evolve(parsed, **figures) if figures else parsed


def parse_retry_after(
    header: str | None, suggestion: str | None = None, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date,
    RFC 9110 section 10.2.3), else from a "retry after N seconds" suggestion."""
    if header:
        value = header.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                current = now or datetime.now(timezone.utc)
                return max(0.0, (when - current).total_seconds())
        else:
            if seconds >= 0 and seconds == seconds:  # not negative, not NaN
                return seconds
    if suggestion:
        match = _RETRY_HINT.search(suggestion)
        if match:
            return float(match.group(1))
    return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> APIError:
    """The ``APIError`` subclass for an HTTP error answer, with the body's fields when the
    body is the documented JSON and a short excerpt when it is not."""
    cls = _error_class(status)
    parsed = _parse_error_body(body)
    if parsed is not None and parsed.code == IDEMPOTENCY_CONFLICT_CODE:
        cls = IdempotencyConflictError
    if parsed is None:
        text = excerpt(body)
        message = f"non-JSON error body: {text}" if text else "empty error body"
        parsed = _ErrorBody(message=message)
    retry_after = parse_retry_after(headers.get("Retry-After"), parsed.fallback_suggestion)
    return cls(
        (parsed.message or f"HTTP {status}") + _figures(parsed),
        status=status,
        code=parsed.code,
        type=parsed.type,
        param=parsed.param,
        fallback_suggestion=parsed.fallback_suggestion,
        retry_after=retry_after,
        request_id=request_id(headers),
    )


# --- Retry decisions ---------------------------------------------------------------------


class Failure(enum.Enum):
    """How an attempt failed when no HTTP answer arrived."""

    NOT_SENT = "not sent"  # connect, DNS or TLS failed: the server saw nothing
    LOST = "lost"  # sent, then reset or closed before an answer
    TIMEOUT = "timeout"  # sent, no answer in time


@attrs.frozen
class Attempt:
    """What one attempt produced: an HTTP status, or a failure with no answer."""

    status: int | None = None
    failure: Failure | None = None
    # The error body's ``code``, where one came: some codes change the verdict.
    code: str | int | None = None


class Verdict(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"  # safe to send again after a delay
    FAIL = "fail"  # final: raise the error
    UNCERTAIN = "uncertain"  # a non-idempotent request may have taken effect


_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that say the request was refused before it did anything: safe even for POST.
_REFUSED_STATUSES = frozenset({429, 503})


def judge(attempt: Attempt, *, idempotent: bool) -> Verdict:
    """Whether an attempt succeeded, may be retried, failed, or left a POST uncertain.

    ``idempotent`` says the request may safely be sent again whatever became of this
    attempt: a GET, or a create that carries an ``Idempotency-Key`` the gateway honours
    (a replay returns the original task). Otherwise a POST is sent again only when it
    certainly created nothing: it never left this machine, or the API refused it with
    429/503. After a reset, a timeout, a 500, 502 or 504 the task may exist and be
    billed, so the outcome is UNCERTAIN. ``paid_outcome_unknown`` (the earlier request
    with this key is still being processed) is a wait-and-replay for a keyed request.
    """
    if attempt.code == PAID_OUTCOME_UNKNOWN_CODE:
        return Verdict.RETRY if idempotent else Verdict.UNCERTAIN
    if attempt.status is not None:
        if 200 <= attempt.status < 300:
            return Verdict.SUCCESS
        if attempt.status in _REFUSED_STATUSES:
            return Verdict.RETRY
        if attempt.status in _RETRYABLE_STATUSES:
            return Verdict.RETRY if idempotent else Verdict.UNCERTAIN
        return Verdict.FAIL
    if attempt.failure is Failure.NOT_SENT or idempotent:
        return Verdict.RETRY
    return Verdict.UNCERTAIN
