"""What every command shares: the global options, the output streams, the client.

Human text goes to stderr when it is about progress or problems and to stdout when it is
the answer; with ``--json`` stdout carries only JSON objects, one per line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

import attrs

from .._client import Client
from .._config import STORAGE_ENV_VAR, find_api_key, resolve_base_url
from .._constants import BASE_URL_ENV_VAR
from .._exceptions import ValidationError
from .._media.storage import S3Storage, Storage
from .._models import PollPolicy
from .errors import UsageError
from .streams import put

__all__ = ["Context"]

# A dry run reads media hosts only and never calls the API, so it needs no key; the
# client insists on one, and this stand-in is never sent anywhere.
_NO_KEY_NEEDED = "dry-run-sends-nothing"


@attrs.define
class Context:
    """The global options of one run, and where its output goes."""

    api_key: str | None = None
    base_url: str | None = None
    json: bool = False
    verbose: bool = False
    replay_creates: bool = True
    # --storage and --storage-endpoint (docs/storage.md).
    storage: str | None = None
    storage_endpoint: str | None = None
    out: TextIO = attrs.field(factory=lambda: sys.stdout)
    err: TextIO = attrs.field(factory=lambda: sys.stderr)
    # What to tell the user if Ctrl-C ends the run now (set as a command goes along).
    on_interrupt: str | None = None

    @property
    def effective_base_url(self) -> str:
        """The API's base URL as the client resolves it, for messages (as given when it
        is not usable, which is what the message is then about)."""
        try:
            return resolve_base_url(self.base_url)
        except ValidationError:
            return self.base_url or f"${BASE_URL_ENV_VAR}"

    def open_client(self, *, poll: PollPolicy | None = None, key_needed: bool = True) -> Client:
        """A client for the global options. ``UsageError`` (exit 2) when no key is found
        or the base URL is unsafe: both are fixed on the command line, not by retrying."""
        key_given = bool(find_api_key(self.api_key))
        api_key = self.api_key if key_given or key_needed else _NO_KEY_NEEDED
        storage = self._storage()
        try:
            # Callbacks go to the user's own receiver, never to this process: its waits
            # poll callback tasks as usual, not as a slow safety net.
            return Client(
                api_key,
                base_url=self.base_url,
                poll=poll,
                receives_callbacks=False,
                replay_creates=self.replay_creates,
                storage=storage,
            )
        except ValidationError as exc:
            if exc.field == "api_key" and not key_given:
                raise UsageError(
                    "no API key: pass --api-key or set $OMNI_EDIT_API_KEY"
                    " (`omni-edit demo` runs without one)"
                ) from None
            if exc.field == "api_key":
                raise UsageError(f"{exc} (check --api-key or $OMNI_EDIT_API_KEY)") from None
            raise UsageError(f"{exc} (check --base-url or ${BASE_URL_ENV_VAR})") from None

    def _storage(self) -> Storage | str | None:
        """The storage the options name: made now when they name it (so a mistake in it,
        or a missing extra, is the one message), else ``$OMNI_EDIT_STORAGE`` when the
        client first needs it. ``UsageError`` (exit 2) for a storage that cannot be."""
        url = self.storage
        if self.storage_endpoint and not url:
            url = os.environ.get(STORAGE_ENV_VAR) or None
            if url is None:
                raise UsageError(
                    f"--storage-endpoint needs --storage s3://bucket/prefix (or ${STORAGE_ENV_VAR})"
                )
        if url is None:
            return None
        try:
            return S3Storage.from_url(url, endpoint_url=self.storage_endpoint)
        except ValidationError as exc:
            raise UsageError(f"{exc} (check --storage)") from None

    def emit(self, obj: dict[str, Any]) -> None:
        """One JSON object on one line of stdout, flushed so a reader sees it at once."""
        put(self.out, json.dumps(obj, ensure_ascii=False))

    def say(self, text: str = "") -> None:
        """A line of the answer, on stdout."""
        put(self.out, text)

    def note(self, text: str) -> None:
        """A line about progress or a problem, on stderr."""
        put(self.err, text)
