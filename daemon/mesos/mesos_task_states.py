"""Mesos task states as the scheduler reads them, and the status the scheduler makes itself.

The Mesos side of the task commands: which ``TASK_*`` state maps to which ``TaskState``, which
Mesos states end an attempt for good, and the ``TASK_LOST`` status the scheduler makes for a
launch that stayed silent past ``scheduler.launch_timeout`` (``SOURCE_SCHEDULER``,
``REASON_LAUNCH_TIMEOUT``), which then goes through the same path as one from Mesos.
"""

from __future__ import annotations

from scale_scheduler.daemon.mesos.mesos_types import TERMINAL_STATES, TaskStatus, Value
from scale_scheduler.state.domain import TaskState

MESOS_STATES: dict[str, TaskState] = {
    "TASK_STAGING": TaskState.STAGING,
    "TASK_STARTING": TaskState.STARTING,
    "TASK_RUNNING": TaskState.RUNNING,
    "TASK_KILLING": TaskState.KILLING,
    "TASK_UNREACHABLE": TaskState.UNREACHABLE,
    "TASK_FINISHED": TaskState.FINISHED,
    "TASK_FAILED": TaskState.FAILED,
    "TASK_KILLED": TaskState.KILLED,
    "TASK_ERROR": TaskState.ERROR,
    "TASK_LOST": TaskState.LOST,
    "TASK_DROPPED": TaskState.DROPPED,
    "TASK_GONE": TaskState.GONE,
    "TASK_GONE_BY_OPERATOR": TaskState.GONE,
    # The master has no record of the task: for us it is lost.
    "TASK_UNKNOWN": TaskState.LOST,
}
FINAL_MESOS_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
"""Ends an attempt cannot come back from. LOST and UNKNOWN are not among them: the agent may
return with the task running, or the ACCEPT may still be on its way to the master."""

LAUNCH_TIMEOUT_MESSAGE = "no status update within scheduler.launch_timeout"


def ends_attempt(mesos_state: str) -> bool:
    """Whether the state says the attempt is over (for now at least: LOST and UNKNOWN too)."""
    return mesos_state in TERMINAL_STATES or mesos_state == "TASK_UNKNOWN"


def launch_timeout_status(mesos_task_id: str, agent_id: str | None, now: float) -> TaskStatus:
    """The scheduler's own verdict on a launch silent for twice ``scheduler.launch_timeout``."""
    return TaskStatus(
        task_id=Value(mesos_task_id),
        state="TASK_LOST",
        message=LAUNCH_TIMEOUT_MESSAGE,
        source="SOURCE_SCHEDULER",
        reason="REASON_LAUNCH_TIMEOUT",
        agent_id=Value(agent_id) if agent_id else None,
        timestamp=now,
    )
