"""Telling an MP4 from what people upload by mistake, in words they recognise.

A link that "should be a video" is often an HTML login or error page, a WebM, or a
photo. Saying so beats "bad box header". ``check_brands`` judges an ``ftyp`` box
(ISO/IEC 14496-12, FileTypeBox); ``describe_non_mp4`` names what a file is when it does
not start with one.
"""

from __future__ import annotations

import struct

from .._exceptions import ValidationError
from .boxes import FIELD, corrupt, show_kind

__all__ = ["check_brands", "describe_non_mp4"]

# Brands of the MP4 family (ISO base media with video); "qt  " is QuickTime, which the
# same parser reads. Registered brands: mp4ra.org. Matching is exact (brands are 4 bytes
# and case matters), so "M4V " keeps its space.
_MP4_BRANDS = frozenset(
    {
        *(f"iso{n}" for n in "m23456789"),
        "mp41", "mp42", "mp71", "avc1", "dash", "msdh", "msix", "cmfc", "cmf2",
        "M4V ", "M4VH", "M4VP", "f4v ", "qt  ", "mmp4", "XAVC", "MSNV", "NDAS",
    }
)  # fmt: skip

# Major brands of files that are ISO base media but not a video clip.
_NOT_VIDEO = {
    "heic": "a HEIF photo",
    "heix": "a HEIF photo",
    "mif1": "a HEIF image",
    "msf1": "a HEIF image sequence",
    "avif": "an AVIF image",
    "avis": "an AVIF image sequence",
    "M4A ": "an audio file (.m4a)",
    "M4B ": "an audiobook file (.m4b)",
    "M4P ": "a protected audio file (.m4p)",
    "F4A ": "an audio file (.f4a)",
    "crx ": "a Canon RAW photo",
    "jp2 ": "a JPEG 2000 image",
}

# Magic numbers at offset 0, for content that is not ISO base media at all.
_MAGIC = (
    (b"\x1a\x45\xdf\xa3", "not an MP4 file (looks like WebM/Matroska)"),
    (b"OggS", "not an MP4 file (looks like Ogg)"),
    (b"FLV", "not an MP4 file (looks like Flash video, FLV)"),
    (b"\x00\x00\x01\xba", "not an MP4 file (looks like an MPEG program stream)"),
    (b"GIF8", "not a video: this is a GIF image"),
    (b"\x89PNG", "not a video: this is a PNG image"),
    (b"\xff\xd8\xff", "not a video: this is a JPEG image"),
    (b"%PDF", "not a video: this is a PDF document"),
    (b"PK\x03\x04", "not a video: this is a ZIP archive"),
    (b"ID3", "not a video: this is an MP3 audio file"),
)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")
_MPEG_TS_PACKET = 188


def check_brands(payload: bytes) -> str:
    """The major brand of an ``ftyp`` payload, if the file is an MP4 video.

    Accepted when the major brand, or failing that any compatible brand, is in the MP4
    family, unless the major brand names a still image or audio-only file.

    Raises:
        ValidationError: the brands say the file is something else.
    """
    if len(payload) < 8:
        raise corrupt("the file type box (ftyp) is too short")
    major = show_kind(payload[:4])
    compatible = {show_kind(payload[i : i + 4]) for i in range(8, len(payload) - 3, 4)}
    if major in _NOT_VIDEO:
        raise ValidationError(
            f"not an MP4 video: this looks like {_NOT_VIDEO[major]} (brand '{major}')",
            field=FIELD,
        )
    if major in _MP4_BRANDS or compatible & _MP4_BRANDS:
        return major
    raise ValidationError(
        f"not an MP4 video: its file type brand '{major}' is not one of the MP4 family",
        field=FIELD,
    )


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The read may have cut a multi-byte character in two at its end.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def describe_non_mp4(head: bytes) -> str:
    """A user-facing sentence saying what ``head``, the start of a file, seems to be."""
    for magic, message in _MAGIC:
        if head.startswith(magic):
            return message
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "not an MP4 file (looks like AVI)"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "not a video: this is a WAV audio file"
    if len(head) > _MPEG_TS_PACKET and head[0] == head[_MPEG_TS_PACKET] == 0x47:
        return "not an MP4 file (looks like an MPEG transport stream, .ts)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(_HTML_STARTS) or b"<html" in text:
        return "looks like an HTML page, not a video (a web page or error page?)"
    if text.startswith(b"<?xml"):
        return "looks like an XML document, not a video (an error response?)"
    if text.startswith((b"{", b"[")):
        return "looks like a JSON document, not a video (an error response?)"
    if head and _looks_like_text(head):
        return "looks like a text file, not a video"
    if len(head) < 8:
        return f"not an MP4 file: it is only {len(head)} bytes long"
    kind = show_kind(struct.unpack_from(">4s", head, 4)[0])
    if kind in {"moov", "mdat", "free", "skip", "wide", "pnot"}:
        return "not an MP4 file: no file type box (ftyp) at the start (an old QuickTime movie?)"
    return "not an MP4 file: it does not start with a file type box (ftyp)"
