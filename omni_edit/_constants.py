"""Every number and name the remote API fixes, in one place.

Source: the provider's public documentation of the EvoLink unified API, model
``gemini-omni-flash-video-edit`` (described in ``docs/api.md``), and, for the retry
and safety numbers, ``docs/reliability.md``. Change a value here only when its source
changes.
"""

from __future__ import annotations

from typing import Final

# --- Hosts and paths (docs/api.md#hosts, #endpoints) ------------------------------------
DEFAULT_BASE_URL: Final = "https://api.evolink.ai"
CREATE_PATH: Final = "/v1/videos/generations"
TASK_PATH_PREFIX: Final = "/v1/tasks/"
# The prefix of the documented example ids, used by the emulator for the ids it issues.
# Ids are the server's to choose: the SDK accepts any of ``TASK_ID_PATTERN``
# (docs/api.md#read-a-task: what EvoLink's own client code checks).
TASK_ID_PREFIX: Final = "task-unified-"
TASK_ID_PATTERN: Final = r"[A-Za-z0-9._:-]{1,128}"
MODEL: Final = "gemini-omni-flash-video-edit"

# Environment variables, in the order they are consulted (docs/architecture.md#layout).
API_KEY_ENV_VARS: Final = ("OMNI_EDIT_API_KEY", "EVOLINK_API_KEY")
BASE_URL_ENV_VAR: Final = "OMNI_EDIT_BASE_URL"

# --- Input rules (docs/api.md#create-a-task) --------------------------------------------
MAX_VIDEO_SECONDS: Final = 10.0
VIDEO_URL_COUNT: Final = 1
MAX_CALLBACK_URL_LENGTH: Final = 2048
# Fields the edit mode refuses: the output follows the input.
EDIT_MODE_FORBIDDEN_FIELDS: Final = ("duration", "aspect_ratio")

# --- Results (docs/api.md#read-a-task) --------------------------------------------------
RESULT_URL_LIFETIME_HOURS: Final = 24

# --- Task error codes and whether retrying later can help (docs/api.md#task-error-codes) ---
# True where the documented advice is "later" or "resubmit": the same input may succeed.
TASK_ERROR_RETRYABLE: Final[dict[str, bool]] = {
    "content_policy_violation": False,
    "invalid_parameters": False,
    "image_processing_error": False,
    "image_dimension_mismatch": False,
    "request_cancelled": True,
    "generation_failed_no_content": False,
    "service_error": True,
    "generation_timeout": True,
    "resource_exhausted": True,
    "quota_exceeded": True,
    "service_unavailable": True,
    "resource_not_found": False,
    "unknown_error": False,
}

# --- Callbacks (docs/api.md#callbacks) --------------------------------------------------
CALLBACK_TIMEOUT_SECONDS: Final = 10.0
CALLBACK_RETRY_DELAYS: Final = (1.0, 2.0, 4.0)

# --- Billing, for estimates only (docs/api.md#billing) ----------------------------------
INPUT_TOKENS_PER_SECOND: Final = 5792
OUTPUT_TOKENS_PER_SECOND: Final = 5792
# Inferred, not documented: docs/api.md#billing gives no price per token. Its creation example
# reserves 102.34 credits; a 5 s clip in and its 5 s result out are 2 * 5 * 5,792 =
# 57,920 tokens, and 102.34 / 57.92 = 1.767 credits per 1,000 tokens. Good for a rough
# estimate only (``omni-edit batch --dry-run``); the API's ``usage`` is authoritative.
CREDITS_PER_1K_TOKENS_ESTIMATE: Final = 1.767

# --- Retry numbers (docs/reliability.md#retries) ----------------------------------------
BACKOFF_BASE_SECONDS: Final = 0.5
BACKOFF_CAP_SECONDS: Final = 20.0
RETRY_AFTER_CAP_SECONDS: Final = 60.0
# botocore "standard" retry quota: a bucket of 500, a retry costs 5 (10 after a
# timeout), a success refunds what its retries cost, or 1 when it needed none.
RETRY_BUDGET_CAPACITY: Final = 500
RETRY_COST: Final = 5
RETRY_COST_TIMEOUT: Final = 10
NO_RETRY_REFUND: Final = 1

# --- Webhook receiver (docs/reliability.md#callbacks) -----------------------------------
MAX_CALLBACK_BODY_BYTES: Final = 64 * 1024

# --- Bounds on what we read -------------------------------------------------------------
# A task object is a few hundred bytes; an API answer far larger is not the API talking.
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
# A probe reads header boxes only: a clip whose ``moov`` is not within this is refused
# (a 10 s clip's header is tens of KB; the SDK, the CLI's dry run and the emulator's input
# check all use this one bound).
MAX_PROBE_BYTES: Final = 4 * 1024 * 1024

# --- Idempotent creates (docs/api.md#idempotency-keys) ----------------------------------
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
# The gateway's answer header when it returns the original task for a repeated key.
IDEMPOTENCY_REPLAYED_HEADER: Final = "idempotency-replayed"
IDEMPOTENCY_KEY_MIN_LENGTH: Final = 16
IDEMPOTENCY_KEY_MAX_LENGTH: Final = 96
# The same key came with a different body (409).
IDEMPOTENCY_CONFLICT_CODE: Final = "idempotency_conflict"
# The earlier request with this key is still being processed: wait, then replay the key.
PAID_OUTCOME_UNKNOWN_CODE: Final = "paid_outcome_unknown"
# How long the gateway keeps a key (the emulator's figure; the gateway's is not
# published, and Stripe's, whose model it follows, is 24 hours).
IDEMPOTENCY_RETENTION_SECONDS: Final = 24 * 3600.0

# --- The batch journal (docs/reliability.md#journal) ------------------------------------
# How long a worker's claim on an input lasts unless renewed; renewed every third of it.
# A dead worker's inputs are taken over this long after its last renewal. Ours:
# long enough that a busy machine's stall does not pass for a death.
JOURNAL_LEASE_SECONDS: Final = 30.0
# Inputs another worker holds are put aside and looked at again later; past this many,
# a worker waits for the oldest one before reading more, so memory stays bounded.
JOURNAL_DEFERRED_MAX: Final = 1000
# How often a worker looks again at an input another worker holds.
JOURNAL_BUSY_POLL_SECONDS: Final = 0.5

# --- Result files (docs/reliability.md#downloads) ---------------------------------------
# The longest name of one folder or file that common file systems take (ext4, APFS,
# NTFS, in bytes or units).
FILE_NAME_MAX_BYTES: Final = 255
# A download writes a temporary file beside its destination, named after it with a few
# more characters: a result's own name keeps this much room, or it would be billed and
# then fail to save.
TEMP_NAME_ROOM_BYTES: Final = 32

# --- Gateway extras: balance, task list, request ids (docs/api.md#gateway-extras) --------
CREDITS_PATH: Final = "/v1/credits"
TASKS_PATH: Final = "/v1/tasks"
# Every answer names itself for support; the gateway uses either header.
REQUEST_ID_HEADERS: Final = ("x-request-id", "x-oneapi-request-id")
# A request id longer than this, or with characters outside printable ASCII, is not
# kept: it goes into messages and logs, and a hostile server chooses it. Ours.
REQUEST_ID_MAX_LENGTH: Final = 128
# Page sizes the SDK asks ``GET /v1/tasks`` for (the gateway's own bounds are not
# published; EvoLink's clients ask for 20 to 100). Ours.
LIST_PAGE_SIZE_MIN: Final = 1
LIST_PAGE_SIZE_MAX: Final = 100
# ``list_tasks`` stops after this many pages or distinct tasks however the server
# answers: a server that repeats pages or inflates ``total`` cannot keep it going.
LIST_MAX_PAGES: Final = 1000
LIST_MAX_TASKS: Final = 100_000
# The display rate EvoLink's clients use.
USD_PER_CREDIT_DISPLAY: Final = 1 / 68

# The finer codes of a 402/403 refusal (the gateway's admission checks, before any task
# exists, so nothing was billed), by which limit they mean (docs/api.md#http-errors).
QUOTA_LIMIT_CODES: Final[dict[str, str]] = {
    "insufficient_quota": "account_balance",
    "insufficient_user_quota": "account_balance",
    "quota_not_enough": "account_balance",
    "account_balance_insufficient": "account_balance",
    "insufficient_token_quota": "key_quota",
    "key_quota_exhausted": "key_quota",
    "token_daily_quota_exceeded": "key_daily_quota",
    "key_daily_quota_exhausted": "key_daily_quota",
    "key_disabled": "key_disabled",
    "key_expired": "key_expired",
    "key_model_not_allowed": "model_not_allowed",
}
# What each limit means and what to do about it, as error messages say it.
QUOTA_LIMIT_ADVICE: Final[dict[str, str]] = {
    "account_balance": "the account's credit balance cannot cover this task: top up the"
    " account, then run again",
    "key_quota": "this API key's own credit limit is used up: raise the key's limit in the"
    " console, or use another key",
    "key_daily_quota": "this API key's daily credit limit is used up; it resets at"
    " midnight: resume tomorrow (a batch with a journal resumes where it stopped), or"
    " raise the key's daily limit",
    "key_disabled": "this API key is disabled: enable it in the console, or use another key",
    "key_expired": "this API key has expired: renew it in the console, or use another key",
    "model_not_allowed": "this API key may not use this model: allow the model for the key"
    " in the console, or use another key",
}

# --- Batch reads (docs/api.md#batch-reads) ----------------------------------------------
# The gateway's batch read: ``{"task_ids": [...]}`` in, ``{"data": [task, ...]}`` out,
# with unknown or foreign ids simply absent; at most this many ids a request.
TASKS_BATCH_PATH: Final = "/v1/tasks/batch"
TASKS_BATCH_MAX_IDS: Final = 50
