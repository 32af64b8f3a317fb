"""omni_edit: the asyncio-native SDK for the Gemini Omni Flash video-edit API.

::

    async with omni_edit.Client() as client:
        task = await client.submit(url, "Make the lighting warmer, keep everything else")

The names below are the whole public surface; modules starting with ``_`` are private.
"""

from ._batch.batch_status import batch_outcomes, batch_status
from ._client import Client
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DownloadError,
    EventLoopError,
    IdempotencyConflictError,
    InsufficientQuotaError,
    JournalError,
    MalformedResponseError,
    NotFoundError,
    OmniEditError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ResultExpiredError,
    ServerError,
    StorageError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
    WaitTimeoutError,
)
from ._media.storage import S3Storage, Storage
from ._models import (
    Balance,
    BatchProgress,
    BatchStatus,
    Cost,
    EditInput,
    EditOutcome,
    EditRequest,
    MediaInfo,
    PollPolicy,
    StoredClip,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BatchProgress",
    "BatchStatus",
    "Client",
    "Cost",
    "DownloadError",
    "EditInput",
    "EditOutcome",
    "EditRequest",
    "EventLoopError",
    "IdempotencyConflictError",
    "InsufficientQuotaError",
    "JournalError",
    "MalformedResponseError",
    "MediaInfo",
    "NotFoundError",
    "OmniEditError",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RequestTooLargeError",
    "ResultExpiredError",
    "S3Storage",
    "ServerError",
    "Storage",
    "StorageError",
    "StoredClip",
    "SubmissionUncertainError",
    "Task",
    "TaskError",
    "TaskFailedError",
    "TaskStatus",
    "Usage",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
    "batch_outcomes",
    "batch_status",
]
