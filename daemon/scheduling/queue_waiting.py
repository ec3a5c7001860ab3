"""Why a queued task waits: the last offer pass's verdict per queue group, in words."""

from __future__ import annotations

from collections.abc import Iterable

from scale_scheduler.daemon.scheduling.matcher import GroupWaiting, WaitReason
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.tasks import Task, iso

RETRY_WAIT = "retry back-off until "
"""How ``waiting_reason`` begins while a task waits out its retry back-off."""


def waiting_reason(
    index: QueueIndex, task: Task, scheduler_paused: bool, in_flight: int
) -> str | None:
    if task.state is not TaskState.QUEUED:
        return None
    if scheduler_paused:
        return "the scheduler is paused"
    if task.busy:
        return "being launched"
    if task.next_attempt_at:
        return f"{RETRY_WAIT}{iso(task.next_attempt_at)}"
    group = index.group_of(task)
    waiting = group.waiting if group is not None else None
    if isinstance(waiting, GroupWaiting):
        if waiting.reason is WaitReason.FLOW_CONTROL:
            return f"launch flow control: {in_flight} tasks in flight"
        return waiting.message
    return "waiting for an offer"


def record_waiting(index: QueueIndex, waiting: Iterable[GroupWaiting]) -> None:
    """Keep the last pass's verdict per group (groups placed in full lose theirs)."""
    for group in index.groups():
        group.waiting = None
    groups = {group.key: group for group in index.groups()}
    for item in waiting:
        target = groups.get((item.priority, item.shape))
        if target is not None:
            target.waiting = item
