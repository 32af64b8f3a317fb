"""read_media_info: durations from real ffmpeg files, hand-built box trees, and refusals."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest

from omni_edit._exceptions import ValidationError
from omni_edit._media.mp4 import MediaFacts, read_media_info
from omni_edit._media.sources import FileSource

pytestmark = pytest.mark.anyio

MEDIA = Path(__file__).parent / "data" / "media"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class MemorySource:
    """Bytes in memory; can hide its size, and records every read."""

    def __init__(self, data: bytes, *, known_size: bool = True) -> None:
        self.data = data
        self.known_size = known_size
        self.reads: list[tuple[int, int]] = []

    async def size(self) -> int | None:
        return len(self.data) if self.known_size else None

    async def read(self, offset: int, length: int) -> bytes:
        assert offset >= 0
        assert length >= 0
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


# --- Building boxes (ISO/IEC 14496-12 layouts) --------------------------------------------


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, payload: bytes, *, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags) + payload)


def ftyp(major: bytes = b"isom", *compatible: bytes) -> bytes:
    return box(b"ftyp", major + struct.pack(">I", 512) + b"".join(compatible or (b"isom",)))


def mvhd(timescale: int, duration: int, *, version: int = 0) -> bytes:
    if version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    return full_box(b"mvhd", times + bytes(80), version=version)


def tkhd(track_id: int, width: int = 0, height: int = 0) -> bytes:
    fields = struct.pack(">IIIII", 0, 0, track_id, 0, 0) + bytes(52)
    return full_box(b"tkhd", fields + struct.pack(">II", width << 16, height << 16), flags=3)


def trak(
    track_id: int, handler: bytes, timescale: int, duration: int, size: tuple[int, int] = (0, 0)
) -> bytes:
    mdhd = full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, timescale, duration, 0, 0))
    hdlr = full_box(b"hdlr", struct.pack(">I4s", 0, handler) + bytes(13))
    return box(b"trak", tkhd(track_id, *size) + box(b"mdia", mdhd + hdlr))


def mvex(*, mehd: int | None = None, trex: dict[int, int] | None = None) -> bytes:
    payload = b"" if mehd is None else full_box(b"mehd", struct.pack(">I", mehd))
    for track_id, default in (trex or {}).items():
        payload += full_box(b"trex", struct.pack(">5I", track_id, 1, default, 0, 0))
    return box(b"mvex", payload)


def traf(
    track_id: int,
    *,
    durations: list[int] | None = None,
    count: int = 0,
    default: int | None = None,
    tfdt: int | None = None,
) -> bytes:
    tfhd_flags = 0x020000 | (0x08 if default is not None else 0)
    tfhd = full_box(
        b"tfhd",
        struct.pack(">I", track_id) + (b"" if default is None else struct.pack(">I", default)),
        flags=tfhd_flags,
    )
    payload = tfhd
    if tfdt is not None:
        payload += full_box(b"tfdt", struct.pack(">Q", tfdt), version=1)
    if durations is not None:  # duration and size per sample
        samples = b"".join(struct.pack(">II", d, 100) for d in durations)
        payload += full_box(b"trun", struct.pack(">I", len(durations)) + samples, flags=0x300)
    else:
        payload += full_box(b"trun", struct.pack(">I", count), flags=0)
    return box(b"traf", payload)


def moof(*trafs: bytes) -> bytes:
    return box(b"moof", full_box(b"mfhd", struct.pack(">I", 1)) + b"".join(trafs))


def sidx(timescale: int, start: int, durations: list[int], *, version: int = 0) -> bytes:
    times = struct.pack(">QQ" if version == 1 else ">II", start, 0)
    refs = b"".join(struct.pack(">III", 1000, d, 0x90000000) for d in durations)
    head = struct.pack(">II", 1, timescale) + times + struct.pack(">HH", 0, len(durations))
    return full_box(b"sidx", head + refs, version=version)


VIDEO = trak(1, b"vide", 1000, 0, size=(640, 360))
SOUND = trak(2, b"soun", 48000, 0)
MDAT = box(b"mdat", bytes(100))


async def facts_of(data: bytes, **kwargs: int) -> MediaFacts:
    return await read_media_info(MemorySource(data), **kwargs)


async def error_of(data: bytes, **kwargs: int) -> str:
    with pytest.raises(ValidationError) as caught:
        await read_media_info(MemorySource(data), **kwargs)
    assert caught.value.field == "video_url"
    return str(caught.value)


# --- The committed ffmpeg fixtures (tests/data/media/make_fixtures.py) ---------------------

# name: duration (as ffprobe reports it), has_audio, fragmented
FIXTURES = {
    "faststart.mp4": (3.0, False, False),
    "moov_at_end.mp4": (3.0, True, False),
    "v1_largesize.mp4": (3.0, True, False),
    "clip_9_9s.mp4": (9.9, True, False),
    "clip_10_1s.mp4": (10.1, False, False),
    "fragmented.mp4": (3.128, True, True),
    "fragmented_moov_samples.mp4": (3.0, False, True),
    "fragmented_sidx.mp4": (3.0, False, True),
    "fragmented_global_sidx.mp4": (3.0, False, True),
    "fragmented_mehd.mp4": (3.0, False, True),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
async def test_fixture_duration_size_and_audio_are_read_from_a_file(name: str) -> None:
    duration, has_audio, fragmented = FIXTURES[name]
    facts = await read_media_info(FileSource(MEDIA / name))
    assert facts.duration == pytest.approx(duration, abs=0.05)
    assert (facts.width, facts.height) == (64, 36)
    assert facts.has_audio is has_audio
    assert facts.fragmented is fragmented
    assert 0 < facts.bytes_read < (MEDIA / name).stat().st_size


@pytest.mark.parametrize("name", sorted(FIXTURES))
async def test_fixture_reads_the_same_with_the_size_unknown(name: str) -> None:
    data = (MEDIA / name).read_bytes()
    facts = await read_media_info(MemorySource(data, known_size=False))
    assert facts.duration == pytest.approx(FIXTURES[name][0], abs=0.05)


async def test_faststart_reads_the_moov_and_not_the_media() -> None:
    size = (MEDIA / "faststart.mp4").stat().st_size
    facts = await read_media_info(FileSource(MEDIA / "faststart.mp4"))
    assert facts.brand == "isom"
    assert facts.bytes_read < size * 0.4


async def test_moov_at_end_is_found_without_reading_the_mdat() -> None:
    data = (MEDIA / "moov_at_end.mp4").read_bytes()
    source = MemorySource(data)
    facts = await read_media_info(source)
    mdat_size = struct.unpack_from(">I", data, 40)[0]  # ftyp (32) + free (8), then mdat
    assert data[44:48] == b"mdat"
    mdat_end = 40 + mdat_size
    # Only the first 64-byte read reaches into the mdat; the rest is read from its end on.
    assert all(offset + n <= 64 or offset >= mdat_end for offset, n in source.reads)
    assert facts.bytes_read <= len(data) - mdat_size + 64


async def test_mehd_settles_the_duration_before_the_first_fragment() -> None:
    data = (MEDIA / "fragmented_mehd.mp4").read_bytes()
    facts = await read_media_info(MemorySource(data))
    assert facts.duration == pytest.approx(3.0)
    assert facts.bytes_read <= data.index(b"moof") - 4 + 16


async def test_clip_over_ten_seconds_reports_its_true_length() -> None:
    facts = await read_media_info(FileSource(MEDIA / "clip_10_1s.mp4"))
    assert facts.duration > 10.0


async def test_empty_file_is_refused() -> None:
    with pytest.raises(ValidationError, match="empty file"):
        await read_media_info(FileSource(MEDIA / "empty.mp4"))


async def test_webm_is_named_as_webm() -> None:
    with pytest.raises(ValidationError, match=r"not an MP4 file \(looks like WebM/Matroska\)"):
        await read_media_info(FileSource(MEDIA / "clip.webm"))


async def test_html_page_saved_as_mp4_is_named_as_html() -> None:
    with pytest.raises(ValidationError, match="looks like an HTML page, not a video"):
        await read_media_info(FileSource(MEDIA / "html_page.mp4"))


async def test_truncated_file_says_the_moov_is_missing() -> None:
    with pytest.raises(ValidationError, match="truncated MP4: moov box missing"):
        await read_media_info(FileSource(MEDIA / "truncated.mp4"))


async def test_truncated_file_of_unknown_size_says_the_moov_is_missing() -> None:
    data = (MEDIA / "truncated.mp4").read_bytes()
    with pytest.raises(ValidationError, match="truncated MP4: moov box missing"):
        await read_media_info(MemorySource(data, known_size=False))


async def test_missing_file_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="could not read the video file"):
        await read_media_info(FileSource(MEDIA / "no_such_clip.mp4"))


async def test_moov_larger_than_the_read_limit_is_refused() -> None:
    data = (MEDIA / "moov_at_end.mp4").read_bytes()
    message = await error_of(data, max_bytes=1024)
    assert "1024-byte read limit" in message


async def test_no_read_goes_past_max_bytes() -> None:
    data = (MEDIA / "fragmented.mp4").read_bytes()
    for limit in (64, 100, 500, 1500, 2500):
        source = MemorySource(data)
        with contextlib.suppress(ValidationError):
            await read_media_info(source, max_bytes=limit)
        assert sum(n for _, n in source.reads) <= limit


# --- Hand-built files ----------------------------------------------------------------------


async def test_version_1_mvhd_is_read() -> None:
    facts = await facts_of(ftyp() + box(b"moov", mvhd(90000, 450000, version=1) + VIDEO) + MDAT)
    assert facts.duration == 5.0
    assert (facts.width, facts.height, facts.has_audio) == (640, 360, False)


async def test_sound_track_is_reported() -> None:
    facts = await facts_of(ftyp() + box(b"moov", mvhd(1000, 2000) + VIDEO + SOUND) + MDAT)
    assert facts.has_audio is True


async def test_file_without_video_track_has_no_picture_size() -> None:
    facts = await facts_of(ftyp() + box(b"moov", mvhd(1000, 2000) + SOUND) + MDAT)
    assert (facts.width, facts.height) == (None, None)


async def test_largesize_mdat_before_moov_is_skipped() -> None:
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 1000) + bytes(1000)
    facts = await facts_of(ftyp() + mdat + box(b"moov", mvhd(1000, 4000) + VIDEO))
    assert facts.duration == 4.0
    assert facts.bytes_read < 1000


async def test_mdat_of_size_zero_runs_to_the_end_of_the_file() -> None:
    mdat_to_end = struct.pack(">I4s", 0, b"mdat") + bytes(500)
    facts = await facts_of(ftyp() + box(b"moov", mvhd(1000, 4000) + VIDEO) + mdat_to_end)
    assert facts.duration == 4.0
    message = await error_of(ftyp() + mdat_to_end + box(b"moov", mvhd(1000, 4000)))
    assert "moov box missing" in message


async def test_mvhd_without_duration_falls_back_to_the_tracks() -> None:
    track = trak(1, b"vide", 600, 1800)
    facts = await facts_of(ftyp() + box(b"moov", mvhd(1000, 0xFFFFFFFF) + track) + MDAT)
    assert facts.duration == 3.0


async def test_mehd_gives_a_fragmented_files_length() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex(mehd=7500, trex={1: 40}))
    assert (await facts_of(ftyp() + moov + moof(traf(1, count=5)) + MDAT)).duration == 7.5


async def test_sidx_durations_are_added_up() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex(trex={1: 40}))
    data = ftyp(b"iso5", b"dash") + moov
    data += sidx(1000, 0, [2000, 1500]) + moof(traf(1, count=50)) + MDAT
    data += sidx(1000, 3500, [1000], version=1) + moof(traf(1, count=25)) + MDAT
    facts = await facts_of(data)
    assert facts.duration == 4.5  # from the indexes, not 75 samples x 40 ms
    assert facts.fragmented is True


async def test_trun_sample_durations_are_added_up_per_track() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + SOUND + mvex())
    data = ftyp() + moov
    data += moof(traf(1, durations=[500] * 4), traf(2, durations=[48000])) + MDAT
    data += moof(traf(1, durations=[500] * 6), traf(2, durations=[96000, 96000])) + MDAT
    assert (await facts_of(data)).duration == 5.0  # video 10 x 0.5 s; sound 5 s as well


async def test_trun_without_durations_uses_tfhd_then_trex_defaults() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex(trex={1: 100}))
    data = ftyp() + moov + moof(traf(1, count=10, default=200)) + MDAT
    data += moof(traf(1, count=10)) + MDAT
    assert (await facts_of(data)).duration == 3.0  # 10 x 0.2 s, then 10 x 0.1 s


async def test_tfdt_places_a_fragment_on_the_timeline() -> None:
    moov = box(b"moov", mvhd(1000, 1000) + trak(1, b"vide", 1000, 1000) + mvex())
    data = ftyp() + moov + moof(traf(1, durations=[250] * 4, tfdt=6000)) + MDAT
    assert (await facts_of(data)).duration == 7.0


async def test_fragments_extend_samples_held_in_the_moov() -> None:
    moov = box(b"moov", mvhd(1000, 1000) + trak(1, b"vide", 1000, 1000) + mvex())
    data = ftyp() + moov + moof(traf(1, durations=[500, 500])) + MDAT
    assert (await facts_of(data)).duration == 2.0


async def test_empty_fragmented_movie_has_no_duration() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex())
    assert "declares no duration" in await error_of(ftyp() + moov)


@pytest.mark.parametrize(
    ("major", "compatible", "accepted"),
    [
        (b"isom", b"isom", True),
        (b"mp42", b"mp41", True),
        (b"qt  ", b"qt  ", True),
        (b"M4V ", b"M4V ", True),
        (b"XYZW", b"iso6", True),
        (b"heic", b"mif1", False),
        (b"M4A ", b"isom", False),
        (b"XYZW", b"XYZV", False),
    ],
)
async def test_brands_of_the_mp4_family_are_accepted(
    major: bytes, compatible: bytes, accepted: bool
) -> None:
    data = ftyp(major, compatible) + box(b"moov", mvhd(1000, 1000) + VIDEO) + MDAT
    if accepted:
        assert (await facts_of(data)).brand == major.decode()
    else:
        assert "not an MP4 video" in await error_of(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x1a\x45\xdf\xa3" + bytes(60), "looks like WebM/Matroska"),
        (b"\n\n  <!DOCTYPE HTML><html><body>Not found</body></html>", "HTML page"),
        (b'{"error": "forbidden"}', "JSON document"),
        (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "XML document"),
        (b"GIF89a" + bytes(40), "GIF image"),
        (b"\xff\xd8\xff\xe0" + bytes(40), "JPEG image"),
        (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(40), "looks like AVI"),
        (b"hello, this is plain text", "text file"),
        (b"\x00\x01", "only 2 bytes long"),
        (box(b"moov", mvhd(1000, 1000)), "no file type box"),
        (bytes(range(200, 256)) * 2, "does not start with a file type box"),
    ],
)
async def test_other_content_is_named_in_user_terms(data: bytes, expected: str) -> None:
    assert expected in await error_of(data)


async def test_box_smaller_than_its_header_is_corrupt() -> None:
    bad = struct.pack(">I4s", 4, b"free")
    assert "less than its own 8-byte header" in await error_of(ftyp() + bad + bytes(20))


async def test_child_box_overrunning_its_parent_is_corrupt() -> None:
    moov = box(b"moov", struct.pack(">I4s", 500, b"mvhd") + bytes(100))
    assert "runs past the end of its 'moov' box" in await error_of(ftyp() + moov)


async def test_two_moov_boxes_are_corrupt() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex())
    assert "two moov boxes" in await error_of(ftyp() + moov + moov)


async def test_moov_without_mvhd_is_corrupt() -> None:
    assert "no movie header" in await error_of(ftyp() + box(b"moov", VIDEO) + MDAT)


async def test_zero_timescale_is_corrupt() -> None:
    assert "timescale of 0" in await error_of(ftyp() + box(b"moov", mvhd(0, 10)) + MDAT)


async def test_trun_claiming_more_samples_than_it_holds_is_corrupt() -> None:
    lying = full_box(b"trun", struct.pack(">III", 10**9, 1, 100), flags=0x100)
    tfhd = full_box(b"tfhd", struct.pack(">I", 1))
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex())
    data = ftyp() + moov + box(b"moof", box(b"traf", tfhd + lying)) + MDAT
    assert "more samples than it holds" in await error_of(data)


async def test_fragment_of_an_undeclared_track_is_corrupt() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex())
    data = ftyp() + moov + moof(traf(9, durations=[100])) + MDAT
    assert "track 9" in await error_of(data)


async def test_box_past_the_end_of_the_file_after_the_moov_is_truncation() -> None:
    moov = box(b"moov", mvhd(1000, 0) + VIDEO + mvex())
    cut = (moof(traf(1, durations=[100])) + MDAT)[:-40]
    message = await error_of(ftyp() + moov + cut)
    assert message.startswith("truncated MP4: the file is")


async def test_max_bytes_below_the_first_read_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        await read_media_info(MemorySource(b""), max_bytes=10)
    assert caught.value.field == "max_bytes"


async def test_source_sending_more_than_asked_is_cut_to_size() -> None:
    class Generous(MemorySource):
        async def read(self, offset: int, length: int) -> bytes:
            return self.data[offset : offset + length + 4096]

    data = (MEDIA / "faststart.mp4").read_bytes()
    facts = await read_media_info(Generous(data))
    assert facts.bytes_read < len(data) * 0.4
