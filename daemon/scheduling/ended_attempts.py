"""``EndedAttempts``: the most recent attempts that ended for good, bounded.

The status resolution reads it to tell a stale update (a resend, a reordered update, a late
reconciliation answer about an attempt that ended for good) from a stray one that needs a KILL.
"""

from __future__ import annotations

from collections import deque

ENDED_MEMORY = 100_000
"""How many attempts that ended for good are remembered (about 13 MB, whatever the task count)."""


class EndedAttempts:
    """The last ``capacity`` attempts that ended for good, oldest forgotten first.

    Keys are ints built from ``(task id, attempt)`` rather than Mesos id strings: smaller, and
    bounded however many tasks the daemon has run.
    """

    __slots__ = ("_capacity", "_keys", "_order")

    def __init__(self, capacity: int = ENDED_MEMORY) -> None:
        self._capacity = capacity
        self._order: deque[int] = deque()
        self._keys: set[int] = set()

    @staticmethod
    def _key(task_id: int, attempt: int) -> int | None:
        if not 0 <= attempt < 1 << 32:
            return None  # no attempt of ours; such an id is never remembered
        return task_id << 32 | attempt

    def add(self, task_id: int, attempt: int) -> None:
        key = self._key(task_id, attempt)
        if key is None or key in self._keys:
            return
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._capacity:
            self._keys.discard(self._order.popleft())

    def has(self, task_id: int, attempt: int) -> bool:
        key = self._key(task_id, attempt)
        return key is not None and key in self._keys

    def __len__(self) -> int:
        return len(self._order)
