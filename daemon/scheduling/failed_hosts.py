"""The hosts each live task failed on, which its retries avoid.

A task requeued after a failure of its own or of the cluster's (not an operator's kill) records
the host that attempt ran on; the matcher takes ``by_task`` as its ``avoid`` and places a retry
elsewhere when another host fits (a soft preference: if none does, it may go back). An entry is
dropped once its task ends for good or is canceled, so only live tasks that failed somewhere
have one. At start-up, ``restore`` rebuilds the entries from the stored attempt history of the
live tasks, so a restart keeps the preference (as far back as the history reaches: its last
``ATTEMPT_HISTORY`` attempts).

Pure data structure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from scale_scheduler.daemon.mesos.failure_classes import FailureClass
from scale_scheduler.state.tasks import EndedAttempt

OPERATOR = FailureClass.OPERATOR.value


class FailedHosts:
    __slots__ = ("by_task",)

    def __init__(self) -> None:
        self.by_task: dict[int, set[str]] = {}
        """Per live task that failed somewhere: the hosts its attempts failed on."""

    def record(self, task_id: int, hostname: str | None, failure: FailureClass) -> None:
        """A requeued attempt ended with ``failure`` on ``hostname``."""
        if hostname and failure is not FailureClass.OPERATOR:
            self.by_task.setdefault(task_id, set()).add(hostname)

    def restore(self, history: Mapping[int, Iterable[EndedAttempt]]) -> None:
        """Rebuild the entries of live tasks from their stored failed attempts (at start-up)."""
        for task_id, attempts in history.items():
            for attempt in attempts:
                if attempt.hostname and attempt.failure_class != OPERATOR:
                    self.by_task.setdefault(task_id, set()).add(attempt.hostname)

    def forget(self, task_id: int) -> None:
        """The task ended for good or was canceled."""
        if self.by_task:
            self.by_task.pop(task_id, None)

    def __len__(self) -> int:
        return len(self.by_task)
