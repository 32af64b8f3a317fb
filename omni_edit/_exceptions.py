"""The exceptions ``omni_edit`` raises, in one tree.

::

    OmniEditError
    ├── ValidationError            bad input, raised before anything is sent or billed
    ├── APIError                   the API answered with an HTTP error
    │   ├── BadRequestError        400
    │   ├── AuthenticationError    401
    │   ├── InsufficientQuotaError 402
    │   ├── PermissionDeniedError  403
    │   ├── NotFoundError          404
    │   ├── IdempotencyConflictError 409, the key was used for another request
    │   ├── RequestTooLargeError   413
    │   ├── RateLimitError         429
    │   └── ServerError            5xx
    ├── APIConnectionError         no HTTP answer (refused, reset, DNS, TLS)
    │   └── APITimeoutError        no answer within the request timeout
    ├── MalformedResponseError     an answer that is not the documented shape
    ├── SubmissionUncertainError   a create request whose outcome is unknown
    ├── TaskFailedError            the task ended failed or cancelled
    ├── WaitTimeoutError           a wait ran out of time
    ├── JournalError               the batch journal could not be read or written
    ├── EventLoopError             a client used from another event loop than its own
    └── DownloadError              a result could not be saved
        └── ResultExpiredError     the result link is past its 24 hours

``SubmissionUncertainError`` is deliberately *not* an ``APIConnectionError``: code that
retries on connection errors must not resend a create request that may already have
created, and billed, a task.

No exception shows the API key in its ``str`` or ``repr``, even when a server echoed it
into a message (docs/reliability.md#secrets).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._constants import QUOTA_LIMIT_ADVICE, QUOTA_LIMIT_CODES
from ._redact import redact_secrets

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "DownloadError",
    "EventLoopError",
    "IdempotencyConflictError",
    "InsufficientQuotaError",
    "JournalError",
    "MalformedResponseError",
    "NotFoundError",
    "OmniEditError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ResultExpiredError",
    "ServerError",
    "StorageError",
    "SubmissionUncertainError",
    "TaskFailedError",
    "ValidationError",
    "WaitTimeoutError",
]


class OmniEditError(Exception):
    """Base of every exception this package raises on purpose."""

    # Messages quote servers (an error body, an HTML page), and a server may echo the key.
    def __str__(self) -> str:
        return redact_secrets(super().__str__())

    def __repr__(self) -> str:
        return redact_secrets(super().__repr__())


class ValidationError(OmniEditError, ValueError):
    """Input the API would refuse; raised before any request is sent.

    The message says what to change. ``field`` names the offending argument.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class APIError(OmniEditError):
    """The API answered with an HTTP error status.

    Attributes mirror the documented error body ``{"error": {...}}``; a body that is not
    JSON (a proxy's HTML page, an empty body) still yields the class for its status, with
    ``message`` holding a short excerpt. ``retry_after`` is in seconds, from the
    ``Retry-After`` header (seconds or an HTTP date) or a "retry after N seconds"
    suggestion, else ``None``. ``request_id`` is the answer's ``x-request-id`` (or
    ``x-oneapi-request-id``): quote it to support. It is in ``str(error)`` too.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | int | None = None,
        type: str | None = None,
        param: str | None = None,
        fallback_suggestion: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.fallback_suggestion = fallback_suggestion
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}"]
        if self.type:
            parts.append(self.type)
        if self.code is not None:
            parts.append(f"code={self.code}")
        text = " ".join(parts) + f": {self.message}"
        if self.param:
            text += f" (param: {self.param})"
        if self.fallback_suggestion:
            text += f" [{self.fallback_suggestion}]"
        if (limit := self.limit) is not None:
            text += f": {QUOTA_LIMIT_ADVICE[limit]}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return redact_secrets(text)

    @property
    def limit(self) -> str | None:
        """Which limit a 402/403 refusal names, from its finer ``code``
        (docs/api.md#admission-codes): ``"account_balance"``, ``"key_quota"``,
        ``"key_daily_quota"`` (resets at midnight), ``"key_disabled"``,
        ``"key_expired"`` or ``"model_not_allowed"``; ``None`` for any other error."""
        if self.status in (402, 403) and isinstance(self.code, str):
            return QUOTA_LIMIT_CODES.get(self.code)
        return None


class BadRequestError(APIError):
    """400: a parameter was refused; ``param`` names it when the API says."""


class AuthenticationError(APIError):
    """401: the API key is invalid or expired."""


class InsufficientQuotaError(APIError):
    """402: out of credits; nothing new can be submitted. ``limit`` says whose: the
    account's balance, the key's own limit, or the key's daily limit (which resets at
    midnight)."""


class PermissionDeniedError(APIError):
    """403: the key may not do this; ``limit`` says why where the API's code tells
    (a disabled or expired key, a model the key may not use)."""


class NotFoundError(APIError):
    """404: the model or the task does not exist, or the task has expired."""


class IdempotencyConflictError(APIError):
    """409 ``idempotency_conflict``: the ``Idempotency-Key`` was used before for a
    different request (another clip, prompt or callback URL). Nothing was created.
    ``idempotency_key`` names the key; use a new key for a new request."""

    def __init__(self, message: str, *, idempotency_key: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.idempotency_key = idempotency_key


class RequestTooLargeError(APIError):
    """413: the request body is too large."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` says how long to wait when known."""


class ServerError(APIError):
    """5xx: the API or a proxy in front of it failed."""


class APIConnectionError(OmniEditError):
    """No HTTP answer was received: connection refused or reset, DNS or TLS failure."""


class APITimeoutError(APIConnectionError):
    """No answer arrived within the client's request timeout."""


class MalformedResponseError(OmniEditError):
    """A response whose body is not the documented shape.

    ``field`` is the dotted path of the offending field when one can be named,
    ``status`` the HTTP status, ``excerpt`` the start of the body.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
        self.excerpt = excerpt


class SubmissionUncertainError(OmniEditError):
    """A create request was sent but no answer came back, even after replaying its
    ``Idempotency-Key``: a task may exist, and be billed.

    ``idempotency_key`` is the key the request carried: ``submit(...,
    idempotency_key=exc.idempotency_key)`` with the same inputs resolves it later, since
    the gateway answers a repeated key with the original task instead of a new one. A
    new key, or a client made with ``replay_creates=False``, may pay twice. The
    underlying failure is ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        idempotency_key: str | None = None,
        video_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key
        self.video_url = video_url


class TaskFailedError(OmniEditError):
    """The task ended ``failed`` or ``cancelled``; ``task.error`` says why."""

    def __init__(self, task: Task) -> None:
        error = task.error
        detail = f"{error.code}: {error.message}" if error else "no error detail given"
        super().__init__(f"task {task.id} ended {task.status.value}: {detail}")
        self.task = task

    @property
    def code(self) -> str | None:
        return self.task.error.code if self.task.error else None

    @property
    def retryable(self) -> bool:
        return self.task.error.retryable if self.task.error else False


class WaitTimeoutError(OmniEditError, TimeoutError):
    """A wait ran out of time; ``task`` is the last state seen (the task goes on)."""

    def __init__(self, message: str, *, task: Task | None) -> None:
        super().__init__(message)
        self.task = task


class JournalError(OmniEditError):
    """The batch journal could not be read or written (a full disk, a read-only file,
    a lock held too long). ``edit_many`` submits nothing more once it happens: what it
    cannot record it could pay for twice. Tasks already created are never lost: their
    outcomes carry them, and their ids are logged. Fix the cause, then run the same batch
    again: it resumes from what the journal holds."""


class StorageError(OmniEditError):
    """The object storage local clips are uploaded to could not be used: refused
    credentials, a missing bucket, an unreachable endpoint (docs/storage.md). Nothing
    was submitted for the clip. The message names the store, never a credential."""


class EventLoopError(OmniEditError, RuntimeError):
    """A client was used from an event loop other than the one it first ran in (a second
    ``asyncio.run``, say). Its connections, locks and poll scheduler belong to that loop
    and cannot move. Make one client per event loop: create it inside the coroutine the
    loop runs (``async with omni_edit.Client() as client:``)."""


class DownloadError(OmniEditError):
    """A result could not be saved; no partial file is left at the destination."""


class ResultExpiredError(DownloadError):
    """The result host refused the link: result links live 24 hours after completion."""


# Refusals about the account, not the request (401, 403, 402): every further request
# would be refused alike, so a batch stops submitting at the first and reports it once.
ACCOUNT_ERRORS: tuple[type[APIError], ...] = (
    AuthenticationError,
    PermissionDeniedError,
    InsufficientQuotaError,
)
