"""The visible change a real result shows, keyed from the prompt.

The emulator is no model: it picks one of a few looks by words in the prompt, so a
person watching the demo's results sees that each edit did something, and the same
prompt always gives the same look (docs/media.md#the-emulators-results).
"""

from __future__ import annotations

import hashlib

import attrs

from .._media.render import Filter

__all__ = ["Look", "look_for"]


@attrs.frozen
class Look:
    """A look's ``name``, the FFmpeg ``filters`` that make it and the ``tone_hz`` of the
    sound track the (emulated) model adds."""

    name: str
    filters: tuple[Filter, ...]
    tone_hz: float


# Checked in order: "warmer lighting" is warm before it is bright.
_LOOKS = (
    (
        ("black and white", "black-and-white", "monochrome", "grayscale", "greyscale", "b&w"),
        Look("black and white", (("hue", "s=0"),), 330.0),
    ),
    (
        ("warm", "sunset", "golden", "summer"),
        Look("warmer", (("colortemperature", "temperature=3000"),), 220.0),
    ),
    (
        ("cool", "cold", "winter", "snow", "ice", "blue"),
        Look("cooler", (("colortemperature", "temperature=12000"),), 660.0),
    ),
    (
        ("bright", "lighter", "sunny", "daylight"),
        Look("brighter", (("curves", "all=0/0.15 0.5/0.72 1/1"),), 550.0),
    ),
)


def look_for(prompt: str) -> Look:
    """The look for ``prompt``: by its words, else a tint whose hue the prompt picks."""
    words = prompt.lower()
    for keys, look in _LOOKS:
        if any(key in words for key in keys):
            return look
    digest = hashlib.sha256(prompt.encode()).digest()
    degrees = 60 + digest[0] % 240  # far enough from 0 to be seen
    return Look(f"tint {degrees}°", (("hue", f"h={degrees}:s=1.4"),), 380.0 + digest[1])
