"""The live task records and what is counted about them: the scheduling core's read model.

``TaskBoard`` holds every non-terminal task (``tasks``; those LAUNCHING also in ``launching``),
the queued ones in launch order (the queue ``index``, or ``retry_waits`` while they wait out a
retry back-off), the attempts that ended for good (``ended``), the hosts each task failed on
(``failed_hosts``) and the counters the metrics read at scrape time. The task tracker is its one
writer, in the ``apply`` of each commit, so the board never runs ahead of what is durable; the
facade, the offer pipeline, flow control, the status resolution and the tests read it.

Pure data structure: no I/O, no clock.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from scale_scheduler.daemon.mesos.failure_classes import FailureClass
from scale_scheduler.daemon.scheduling.ended_attempts import EndedAttempts
from scale_scheduler.daemon.scheduling.failed_hosts import FailedHosts
from scale_scheduler.daemon.scheduling.matcher import GroupWaiting
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.daemon.scheduling.queue_waiting import record_waiting, waiting_reason
from scale_scheduler.daemon.scheduling.retry_waits import RetryWaits
from scale_scheduler.state.domain import LAUNCHED, ShapeInterner, TaskState
from scale_scheduler.state.tasks import Task

SHRINK_SLACK_BYTES = 256 * 1024
"""A per-task dict's table is rebuilt once it is this much larger than its entries need."""


class TaskBoard:
    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.launching: dict[int, Task] = {}
        self.index = QueueIndex(self.tasks)
        self.retry_waits = RetryWaits()
        """Queued tasks waiting out their retry back-off (outside the queue index)."""
        self.interner = ShapeInterner()
        self.ended = EndedAttempts()
        self.failed_hosts = FailedHosts()
        self.queue_depth = 0
        """Queued tasks, in the index or waiting out a back-off."""
        self.launched_counts: dict[TaskState, int] = dict.fromkeys(LAUNCHED, 0)
        """Launched tasks in memory by state."""
        self.ended_counts: dict[TaskState, int] = {}
        """Terminal states reached since start."""
        self.failures_by_class: dict[str, int] = {}

    # -- counting (by the tracker, as it applies a change) -------------------------------------

    def count_ended(self, state: TaskState) -> None:
        self.ended_counts[state] = self.ended_counts.get(state, 0) + 1

    def count_failure(self, failure: FailureClass) -> None:
        self.failures_by_class[failure.value] = self.failures_by_class.get(failure.value, 0) + 1

    def shrink_tables(self) -> None:
        """Give back the hash tables of the per-task dicts once a peak has passed: a dict never
        shrinks by itself, so 100,000 tasks once in flight would keep their table for good."""
        for table in (self.tasks, self.launching):
            if sys.getsizeof(table) > SHRINK_SLACK_BYTES + 400 * len(table):
                kept = dict(table)
                table.clear()  # frees the table; the dict object (shared with the index) stays
                table.update(kept)

    # -- reads ---------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Tasks launched and not yet confirmed (LAUNCHING, STAGING, STARTING)."""
        counts = self.launched_counts
        return counts[TaskState.LAUNCHING] + counts[TaskState.STAGING] + counts[TaskState.STARTING]

    def waiting_reason(self, task: Task, scheduler_paused: bool) -> str | None:
        return waiting_reason(self.index, task, scheduler_paused, self.in_flight)

    def queued_in_order(self) -> Iterator[Task]:
        """Every queued task: those the index holds in launch order, then those waiting out a
        retry back-off in the order they come due."""
        yield from self.index.queued()
        yield from self.retry_waits.waiting()

    def record_waiting(self, waiting: Iterable[GroupWaiting]) -> None:
        record_waiting(self.index, waiting)

    def footprint(self) -> dict[str, int]:
        """Sizes of what the board holds per task. All follow live work (nothing stays for a
        finished task) except ``ended``, capped at ``ENDED_MEMORY``."""
        return {
            "tasks": len(self.tasks),
            "launching": len(self.launching),
            "index_groups": len(self.index),
            "index_entries": sum(len(group) for group in self.index.groups()),
            "ended": len(self.ended),
        }
