"""Movie fragments (ISO/IEC 14496-12, 8.8): how long the ``sidx`` and ``moof`` boxes run.

A fragmented MP4 whose ``moov`` has no ``mvex/mehd`` states its length nowhere in one
place. A segment index (``sidx``) sums it per segment; failing that, each movie
fragment's track runs (``moof/traf/trun``) list their samples' durations, with defaults
in ``tfhd`` or ``moov/mvex/trex``. Parsed from bytes in memory, like ``boxes``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import attrs

from .boxes import BoxTally, Fields, children, corrupt

__all__ = ["SegmentIndex", "TrackRun", "parse_moof", "parse_sidx"]

# trun flags (14496-12, TrackRunBox): which optional fields each sample carries.
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_SAMPLE_FIELDS = (0x000100, 0x000200, 0x000400, 0x000800)  # duration, size, flags, cto
_TRUN_SAMPLE_DURATION = 0x000100
# tfhd flags (TrackFragmentHeaderBox): the optional fields before default_sample_duration.
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008


@attrs.frozen
class SegmentIndex:
    """A ``sidx`` box: the presentation time span its references cover."""

    reference_id: int
    timescale: int
    start: int  # earliest_presentation_time
    duration: int  # sum of subsegment_duration


def parse_sidx(payload: bytes) -> SegmentIndex:
    fields = Fields(payload, "sidx")
    version, _ = fields.version_and_flags()
    reference_id = fields.u32()
    timescale = fields.u32()
    start = fields.sized(version)  # earliest_presentation_time
    fields.sized(version)  # first_offset
    fields.u16()  # reserved
    count = fields.u16()
    if count * 12 > fields.remaining():
        raise corrupt("the segment index (sidx) lists more references than it holds")
    if timescale == 0:
        raise corrupt("the segment index (sidx) has a timescale of 0")
    # Each reference: type and size, subsegment_duration, SAP fields (3 x 32 bits).
    duration = sum(entry[1] for entry in struct.iter_unpack(">III", fields.rest()[: count * 12]))
    return SegmentIndex(reference_id, timescale, start, duration)


@attrs.frozen
class TrackRun:
    """One ``traf`` of a movie fragment: its track, tfdt start when given, total length."""

    track_id: int
    base_time: int | None  # tfdt baseMediaDecodeTime, in the track's timescale
    duration: int  # sum of the sample durations, in the track's timescale


def _fragment_header(payload: bytes, defaults: Mapping[int, int]) -> tuple[int, int]:
    """tfhd: (track_ID, default_sample_duration, falling back to the trex default)."""
    fields = Fields(payload, "tfhd")
    _, flags = fields.version_and_flags()
    track_id = fields.u32()
    if flags & _TFHD_BASE_DATA_OFFSET:
        fields.u64()
    if flags & _TFHD_SAMPLE_DESCRIPTION:
        fields.u32()
    default = fields.u32() if flags & _TFHD_DEFAULT_DURATION else defaults.get(track_id, 0)
    return track_id, default


def _run_duration(payload: bytes, default: int) -> int:
    """trun: the sum of its sample durations (explicit, or count x default)."""
    fields = Fields(payload, "trun")
    _, flags = fields.version_and_flags()
    count = fields.u32()
    if flags & _TRUN_DATA_OFFSET:
        fields.u32()
    if flags & _TRUN_FIRST_SAMPLE_FLAGS:
        fields.u32()
    if not flags & _TRUN_SAMPLE_DURATION:
        return count * default
    words = sum(1 for bit in _TRUN_SAMPLE_FIELDS if flags & bit)
    if count * words * 4 > fields.remaining():
        raise corrupt("a track run (trun) lists more samples than it holds")
    # The duration is the first 32-bit word of each sample's record.
    records = struct.iter_unpack(f">{words}I", fields.rest()[: count * words * 4])
    return sum(record[0] for record in records)


def parse_moof(payload: bytes, defaults: Mapping[int, int], tally: BoxTally) -> list[TrackRun]:
    """A ``moof`` payload: one ``TrackRun`` per ``traf`` inside it."""
    runs: list[TrackRun] = []
    for kind, body in children(payload, "moof", tally):
        if kind != "traf":
            continue
        header: tuple[int, int] | None = None
        base_time: int | None = None
        duration = 0
        for inner_kind, inner in children(body, "traf", tally):
            if inner_kind == "tfhd" and header is None:
                header = _fragment_header(inner, defaults)
            elif inner_kind == "tfdt":
                fields = Fields(inner, "tfdt")
                version, _ = fields.version_and_flags()
                base_time = fields.sized(version)
            elif inner_kind == "trun":
                if header is None:
                    raise corrupt("a track run (trun) comes before its fragment header (tfhd)")
                duration += _run_duration(inner, header[1])
        if header is None:
            raise corrupt("a track fragment (traf) has no header (tfhd)")
        runs.append(TrackRun(header[0], base_time, duration))
    return runs
