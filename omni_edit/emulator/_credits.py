"""The account's credits: reserved at creation, settled when a task ends.

A completed task is charged its ``credits_used`` (a little under its reservation, as the
gateway settles from actual usage); a failed or cancelled one is charged nothing
(docs/api.md#billing). Tasks settle lazily, when the balance is next looked at, so
nothing ticks; only unsettled tasks are visited, and a task that is forced to end early
(``Emulator.complete``) settles by its new end.
"""

from __future__ import annotations

from ._state import EmulatedTask

__all__ = ["CreditAccount"]


class CreditAccount:
    """One account's balance, shared by every key; each key's spending is kept too."""

    def __init__(self, credits: float) -> None:
        self.starting = credits
        self._settled = 0.0
        self._reserved = 0.0
        self._open: set[EmulatedTask] = set()
        self._used_by_owner: dict[str, float] = {}

    def _settle(self, now: float) -> None:
        for task in [t for t in self._open if t.ends <= now]:
            self._open.discard(task)
            self._reserved -= task.credits_reserved
            charge = task.credits_used if task.outcome == "completed" else 0.0
            self._settled += charge
            self._used_by_owner[task.owner] = self._used_by_owner.get(task.owner, 0.0) + charge

    def remaining(self, now: float) -> float:
        """Credits not yet spent nor reserved by a running task."""
        self._settle(now)
        return round(self.starting - self._settled - self._reserved, 2)

    def used(self, now: float, owner: str | None = None) -> float:
        """Credits charged so far, to the account or to one key."""
        self._settle(now)
        spent = self._settled if owner is None else self._used_by_owner.get(owner, 0.0)
        return round(spent, 2)

    def reserve(self, task: EmulatedTask) -> None:
        """Hold the task's reservation until it ends."""
        self._open.add(task)
        self._reserved += task.credits_reserved
