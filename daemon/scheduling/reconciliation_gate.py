"""Launches wait for reconciliation after a (re)subscription, as Mesos's framework guide asks.

A new leader (or a restarted instance) knows its launched tasks only from its state: Mesos may
have lost some, finished others. Until the master has answered for every task the scheduler
believed launched when it subscribed, or ``timeout`` has passed, the offer passes launch nothing
(a launch budget of 0: offers are declined with the short flow-control filter, so they come back
as soon as the gate opens). Pure: callers pass the time.
"""

from __future__ import annotations

from collections.abc import Iterable


class ReconciliationGate:
    def __init__(self) -> None:
        self._awaiting: set[str] = set()
        self._deadline = 0.0

    def arm(self, mesos_task_ids: Iterable[str], now: float, timeout: float) -> int:
        """Hold launches until each of ``mesos_task_ids`` was heard of; how many are awaited."""
        self._awaiting = set(mesos_task_ids)
        self._deadline = now + timeout
        return len(self._awaiting)

    def heard(self, mesos_task_id: str) -> bool:
        """A status update arrived for ``mesos_task_id``; True when that opened the gate."""
        if not self._awaiting:
            return False
        self._awaiting.discard(mesos_task_id)
        return not self._awaiting

    def release(self) -> None:
        """Stop waiting (the timeout passed)."""
        self._awaiting.clear()

    def holding(self, now: float) -> bool:
        if self._awaiting and now >= self._deadline:
            self._awaiting.clear()
        return bool(self._awaiting)

    @property
    def awaiting(self) -> int:
        return len(self._awaiting)
