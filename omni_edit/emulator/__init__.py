"""A faithful local emulator of the video-edit API (``docs/api.md``), on aiohttp.web.

::

    from omni_edit.emulator import Emulator, Fault

    async with Emulator(processing_time=(0.05, 0.2), seed=1) as emu:
        emu.inject(Fault.drop_after(), method="POST")  # the next create's answer is lost
        ...  # point a client at emu.base_url with any non-empty key

The API answers on ``base_url``; result files come from ``result_base_url``, another
loopback address and so another origin. ``stats``, ``tasks`` and ``callbacks_sent``
record what happened; ``complete``/``fail``/``cancel``/``expire_results`` force it.
Diagnostics go to the ``omni_edit.emulator`` logger at DEBUG, never with a key.
"""

from ._emulator import Emulator
from ._faults import Fault
from ._state import EmulatedTask
from ._stats import CallbackAttempt, RequestRecord, ResultRequestRecord, Stats

__all__ = [
    "CallbackAttempt",
    "EmulatedTask",
    "Emulator",
    "Fault",
    "RequestRecord",
    "ResultRequestRecord",
    "Stats",
]
