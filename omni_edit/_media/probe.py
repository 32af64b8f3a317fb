"""A clip's facts for the client: where they are read from, and the API's length rule.

Reads go to the clip's own host (a session that carries no API key) or the local file;
the caller holds one of the client's in-flight slots while they run.
"""

from __future__ import annotations

import aiohttp

from .._constants import MAX_PROBE_BYTES, MAX_VIDEO_SECONDS
from .._exceptions import ValidationError
from .._models import MediaInfo
from .._wire.validation import validate_video_url
from .mp4 import read_media_info
from .sources import FileSource, HttpSource

__all__ = ["check_clip", "probe_clip"]


async def probe_clip(target: str, *, session: aiohttp.ClientSession, timeout: float) -> MediaInfo:
    """``MediaInfo`` of the clip at ``target`` (an http(s) URL or a local path), from
    its MP4 header boxes alone, reading at most ``MAX_PROBE_BYTES``.

    Raises ``ValidationError`` for anything that is not a readable MP4."""
    if target.startswith(("http://", "https://")):
        validate_video_url(target)
        async with HttpSource(
            session, target, timeout=timeout, max_bytes=MAX_PROBE_BYTES
        ) as source:
            facts = await read_media_info(source, max_bytes=MAX_PROBE_BYTES)
    else:
        facts = await read_media_info(FileSource(target), max_bytes=MAX_PROBE_BYTES)
    return MediaInfo(
        duration=facts.duration,
        width=facts.width,
        height=facts.height,
        has_audio=facts.has_audio,
        bytes_read=facts.bytes_read,
    )


def check_clip(info: MediaInfo) -> MediaInfo:
    """``info`` if the API would take the clip; ``ValidationError`` if it is too long
    (docs/api.md#limits)."""
    if info.duration > MAX_VIDEO_SECONDS:
        raise ValidationError(
            f"the clip is {info.duration:.2f} s long; the API edits at most"
            f" {MAX_VIDEO_SECONDS:g} s: trim it first",
            field="video_url",
        )
    return info
