"""Where a client's key and base URL come from: the argument, else the environment.

One home for the rule, so the command line resolves them exactly as ``Client`` does.
"""

from __future__ import annotations

import os

from ._constants import API_KEY_ENV_VARS, BASE_URL_ENV_VAR, DEFAULT_BASE_URL
from ._exceptions import ValidationError
from ._media.storage import EXTRA_HINT, Storage, storage_from_url
from ._redact import Secret
from ._wire.validation import validate_base_url

__all__ = [
    "STORAGE_ENV_VAR",
    "find_api_key",
    "journal_lease_seconds",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_storage",
]

# Where local clips are uploaded: ``s3://bucket/prefix`` (docs/storage.md).
STORAGE_ENV_VAR = "OMNI_EDIT_STORAGE"

# A tuning knob, not a setting most need: how long a batch worker's claim on an input
# lasts unless renewed (docs/reliability.md#journal).
JOURNAL_LEASE_ENV_VAR = "OMNI_EDIT_JOURNAL_LEASE_SECONDS"


def find_api_key(api_key: str | None = None) -> str | None:
    """``api_key`` if given, else the first of ``$OMNI_EDIT_API_KEY`` and
    ``$EVOLINK_API_KEY`` that is set, else ``None``."""
    if api_key is not None:
        return api_key
    for name in API_KEY_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_api_key(api_key: str | None = None) -> Secret:
    """The key to send, checked. ``ValidationError`` (field ``api_key``) when there is
    none or it could not be a key."""
    found = find_api_key(api_key)
    if not found:
        raise ValidationError(
            "no API key: pass Client(api_key=...) or set $OMNI_EDIT_API_KEY (or"
            " $EVOLINK_API_KEY). To try the SDK without one, run `omni-edit emulator`.",
            field="api_key",
        )
    if not isinstance(found, str) or not found.isprintable() or any(c.isspace() for c in found):
        # Checked here because a newline in a header value would otherwise surface as an
        # obscure error (or worse, a header injection) at the first request.
        raise ValidationError(
            "the API key contains whitespace or unprintable characters; copy it again",
            field="api_key",
        )
    return Secret(found.removeprefix("Bearer "))


def resolve_base_url(base_url: str | None = None) -> str:
    """``base_url``, else ``$OMNI_EDIT_BASE_URL``, else the real API, checked:
    ``ValidationError`` (field ``base_url``) for anything but https, or plain http to a
    loopback host."""
    return validate_base_url(base_url or os.environ.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL)


def journal_lease_seconds() -> float | None:
    """``$OMNI_EDIT_JOURNAL_LEASE_SECONDS``, or ``None`` for the default."""
    raw = os.environ.get(JOURNAL_LEASE_ENV_VAR)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value <= 3600:
        raise ValidationError(
            f"${JOURNAL_LEASE_ENV_VAR} must be a number of seconds from 0.1 to 3600,"
            f" not {raw[:20]!r}",
            field="journal",
        )
    return value


def resolve_storage(storage: Storage | str | None) -> Storage:
    """The storage local clips go to: ``storage``, else ``$OMNI_EDIT_STORAGE``.
    ``ValidationError`` (field ``storage``) when none is configured, the URL is not
    ``s3://bucket/prefix``, or the S3 support is not installed."""
    if storage is None:
        storage = os.environ.get(STORAGE_ENV_VAR) or None
    if storage is None:
        raise ValidationError(
            "a local clip is uploaded to your object storage, and none is configured:"
            " pass Client(storage='s3://bucket/prefix') (or --storage), or set"
            f" ${STORAGE_ENV_VAR}, with the AWS_* credential variables; it needs"
            f" {EXTRA_HINT}",
            field="storage",
        )
    if isinstance(storage, str):
        return storage_from_url(storage)
    return storage
