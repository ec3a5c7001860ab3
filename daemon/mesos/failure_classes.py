"""Whose fault an attempt's end was: the task's, the cluster's, or an operator's. Pure.

Cook's distinction ("mea culpa" failures): only a failure that is the task's own fault counts
against its ``max_attempts``. A task whose agent was removed, whose offer went stale, or that was
preempted did nothing wrong; it is retried at once, up to a separate limit
(``scheduler.max_cluster_failures``) so that a broken cluster cannot retry it forever.

The table follows ``TaskStatus.Reason`` in ``include/mesos/v1/mesos.proto``:

- ``task``: the command exited non-zero, its container hit a limit, it ran past
  ``max_completion_time``, its description was invalid (``TASK_ERROR``), its container could
  not start (bad image, bad command), or the executor died with it.
- ``cluster``: the agent was removed, restarted, drained, lost contact or is unknown; the offer
  was stale; the container was preempted; the master failed over or forgot the task
  (``TASK_UNKNOWN``, reconciliation); the task was dropped or gone; the daemon's own launch
  timeout (``REASON_LAUNCH_TIMEOUT``, see ``task_tracker``).
- ``operator``: killed because someone asked (the API's DELETE), whatever the status says.

Some states decide alone: ERROR (an invalid description) is the task's; DROPPED, GONE and UNKNOWN
are the cluster's (Mesos defines them as transient or infrastructure ends, whatever the reason).
FAILED, KILLED and LOST are judged by their reason; without a known reason FAILED is the task's,
LOST the cluster's, and a KILLED nobody here asked for the cluster's (an agent drained, or an
operator of the Mesos cluster killed it).
"""

from __future__ import annotations

import enum


class FailureClass(str, enum.Enum):
    TASK = "task"
    CLUSTER = "cluster"
    OPERATOR = "operator"


TASK_REASONS = frozenset(
    {
        "REASON_COMMAND_EXECUTOR_FAILED",
        "REASON_CONTAINER_LAUNCH_FAILED",
        "REASON_CONTAINER_LIMITATION",
        "REASON_CONTAINER_LIMITATION_DISK",
        "REASON_CONTAINER_LIMITATION_MEMORY",
        "REASON_MAX_COMPLETION_TIME_REACHED",
        "REASON_EXECUTOR_TERMINATED",
        "REASON_EXECUTOR_UNREGISTERED",
        "REASON_IO_SWITCHBOARD_EXITED",
        "REASON_TASK_GROUP_INVALID",
        "REASON_TASK_GROUP_UNAUTHORIZED",
        "REASON_TASK_INVALID",
        "REASON_TASK_UNAUTHORIZED",
        "REASON_TASK_CHECK_STATUS_UPDATED",
        "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
    }
)
"""Reasons that put the end on the task itself."""

CLUSTER_REASONS = frozenset(
    {
        "REASON_AGENT_DISCONNECTED",
        "REASON_AGENT_DRAINING",
        "REASON_AGENT_REMOVED",
        "REASON_AGENT_REMOVED_BY_OPERATOR",
        "REASON_AGENT_REREGISTERED",
        "REASON_AGENT_RESTARTED",
        "REASON_AGENT_UNKNOWN",
        "REASON_CONTAINER_PREEMPTED",
        "REASON_CONTAINER_UPDATE_FAILED",
        "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
        "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        "REASON_FRAMEWORK_REMOVED",
        "REASON_GC_ERROR",
        "REASON_INVALID_FRAMEWORKID",
        "REASON_INVALID_OFFERS",
        "REASON_MASTER_DISCONNECTED",
        "REASON_RECONCILIATION",
        "REASON_RESOURCES_UNKNOWN",
        "REASON_TASK_KILLED_DURING_LAUNCH",
        "REASON_TASK_UNKNOWN",
        "REASON_LAUNCH_TIMEOUT",
    }
)
"""Reasons that put the end on the cluster (``REASON_LAUNCH_TIMEOUT`` is the daemon's own, see
``task_tracker``)."""

STATE_DECIDES: dict[str, FailureClass] = {
    "TASK_ERROR": FailureClass.TASK,
    "TASK_DROPPED": FailureClass.CLUSTER,
    "TASK_GONE": FailureClass.CLUSTER,
    "TASK_GONE_BY_OPERATOR": FailureClass.CLUSTER,
    "TASK_UNKNOWN": FailureClass.CLUSTER,
}
"""Ends whose class their state decides, whatever the reason."""

REASON_DECIDES: dict[str, FailureClass] = {
    "TASK_FAILED": FailureClass.TASK,
    "TASK_KILLED": FailureClass.CLUSTER,
    "TASK_LOST": FailureClass.CLUSTER,
}
"""Ends judged by their reason, with the class used when the reason is absent or unknown."""


def classify_end(
    mesos_state: str, reason: str | None, *, kill_requested: bool
) -> FailureClass | None:
    """The class of an attempt that ended with ``mesos_state``; None for a success (FINISHED)
    or a state that ends nothing."""
    if mesos_state not in STATE_DECIDES and mesos_state not in REASON_DECIDES:
        return None
    if kill_requested:
        return FailureClass.OPERATOR
    decided = STATE_DECIDES.get(mesos_state)
    if decided is not None:
        return decided
    if reason in TASK_REASONS:
        return FailureClass.TASK
    if reason in CLUSTER_REASONS:
        return FailureClass.CLUSTER
    return REASON_DECIDES[mesos_state]
