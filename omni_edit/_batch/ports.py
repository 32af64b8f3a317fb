"""What a batch needs of a client, and nothing more.

``edit_many`` drives the client through this protocol rather than through ``Client``:
the batch sits below the client in the layering (``docs/architecture.md``), so it can
be read, tested and reused without the client's internals, and the two never import
each other. ``Client`` satisfies it with its public methods.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Protocol

from .._models import MediaInfo, StoredClip, Task

__all__ = ["BatchClient"]


class BatchClient(Protocol):
    """The public calls ``edit_many`` makes; see ``Client`` for their contracts."""

    @property
    def timeout(self) -> float:
        """Seconds one HTTP request may take: how long a cancelled create is awaited."""
        ...

    @property
    def replay_creates(self) -> bool:
        """Whether a create may be sent again with its Idempotency-Key."""
        ...

    async def submit(
        self,
        video_url: str,
        prompt: str,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Task: ...

    async def wait(self, task_or_id: Task | str) -> Task: ...

    async def download(self, task_or_url: Task | str, dest: str | PathLike[str]) -> Path: ...

    async def preflight(self, video_url: str) -> MediaInfo: ...

    async def upload(self, path: str) -> StoredClip: ...

    async def probe(self, video_url_or_path: str) -> MediaInfo: ...

    @property
    def storage(self) -> object:
        """The client's storage; ``ValidationError`` when none is configured (or its
        extra is missing). Asked before a long clip is split: its segments are hosted
        there (docs/media.md#long-clips)."""
        ...
