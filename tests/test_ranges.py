"""Content-Range parsing: what a result or media host may send, hostile values included."""

from __future__ import annotations

import pytest

from omni_edit._wire.ranges import ContentRange, parse_content_range


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 0-99/1234", ContentRange(0, 99, 1234)),
        ("bytes 100-199/*", ContentRange(100, 199, None)),
        ("bytes */1234", ContentRange(None, None, 1234)),
        ("  bytes 5-5/6 ", ContentRange(5, 5, 6)),
    ],
)
def test_well_formed_values_are_read(value: str, parsed: ContentRange) -> None:
    assert parse_content_range(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "items 0-1/2",
        "bytes 0-1",
        "bytes -1-5/10",
        "bytes 9-3/10",  # last before first
        "bytes 0-1/" + "9" * 5000,  # int() itself refuses this many digits
        "bytes 0-" + "9" * 19 + "/*",  # no file is that large
        "bytes 0-1/2, bytes 3-4/5",
    ],
)
def test_malformed_or_absurd_values_are_none_not_an_exception(value: str | None) -> None:
    assert parse_content_range(value) is None
