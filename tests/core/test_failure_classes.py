"""The failure classes: a row per Mesos end the simulator produces, and every proto reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scale_scheduler.daemon.mesos.failure_classes import (
    CLUSTER_REASONS,
    TASK_REASONS,
    FailureClass,
    classify_end,
)

TASK, CLUSTER, OPERATOR = FailureClass.TASK, FailureClass.CLUSTER, FailureClass.OPERATOR

# ``TaskStatus.Reason`` in include/mesos/v1/mesos.proto (Mesos 1.11).
PROTO_REASONS = {
    "REASON_COMMAND_EXECUTOR_FAILED": TASK,
    "REASON_CONTAINER_LAUNCH_FAILED": TASK,
    "REASON_CONTAINER_LIMITATION": TASK,
    "REASON_CONTAINER_LIMITATION_DISK": TASK,
    "REASON_CONTAINER_LIMITATION_MEMORY": TASK,
    "REASON_CONTAINER_PREEMPTED": CLUSTER,
    "REASON_CONTAINER_UPDATE_FAILED": CLUSTER,
    "REASON_MAX_COMPLETION_TIME_REACHED": TASK,
    "REASON_EXECUTOR_REGISTRATION_TIMEOUT": CLUSTER,
    "REASON_EXECUTOR_REREGISTRATION_TIMEOUT": CLUSTER,
    "REASON_EXECUTOR_TERMINATED": TASK,
    "REASON_EXECUTOR_UNREGISTERED": TASK,
    "REASON_FRAMEWORK_REMOVED": CLUSTER,
    "REASON_GC_ERROR": CLUSTER,
    "REASON_INVALID_FRAMEWORKID": CLUSTER,
    "REASON_INVALID_OFFERS": CLUSTER,
    "REASON_IO_SWITCHBOARD_EXITED": TASK,
    "REASON_MASTER_DISCONNECTED": CLUSTER,
    "REASON_RECONCILIATION": CLUSTER,
    "REASON_RESOURCES_UNKNOWN": CLUSTER,
    "REASON_AGENT_DISCONNECTED": CLUSTER,
    "REASON_AGENT_DRAINING": CLUSTER,
    "REASON_AGENT_REMOVED": CLUSTER,
    "REASON_AGENT_REMOVED_BY_OPERATOR": CLUSTER,
    "REASON_AGENT_REREGISTERED": CLUSTER,
    "REASON_AGENT_RESTARTED": CLUSTER,
    "REASON_AGENT_UNKNOWN": CLUSTER,
    "REASON_TASK_KILLED_DURING_LAUNCH": CLUSTER,
    "REASON_TASK_CHECK_STATUS_UPDATED": TASK,
    "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED": TASK,
    "REASON_TASK_GROUP_INVALID": TASK,
    "REASON_TASK_GROUP_UNAUTHORIZED": TASK,
    "REASON_TASK_INVALID": TASK,
    "REASON_TASK_UNAUTHORIZED": TASK,
    "REASON_TASK_UNKNOWN": CLUSTER,
}


@pytest.mark.parametrize(
    ("state", "reason", "kill_requested", "expected"),
    [
        # What the simulator sends (simulator/agents.py, simulator/master.py).
        ("TASK_FAILED", "REASON_COMMAND_EXECUTOR_FAILED", False, TASK),
        ("TASK_LOST", "REASON_EXECUTOR_TERMINATED", False, TASK),
        ("TASK_GONE", "REASON_EXECUTOR_TERMINATED", False, CLUSTER),
        ("TASK_DROPPED", "REASON_CONTAINER_LAUNCH_FAILED", False, CLUSTER),
        ("TASK_KILLED", "REASON_TASK_KILLED_DURING_LAUNCH", False, CLUSTER),
        ("TASK_KILLED", "REASON_TASK_KILLED_DURING_LAUNCH", True, OPERATOR),
        ("TASK_LOST", "REASON_AGENT_REMOVED", False, CLUSTER),
        ("TASK_LOST", "REASON_INVALID_OFFERS", False, CLUSTER),
        ("TASK_DROPPED", "REASON_INVALID_OFFERS", False, CLUSTER),
        ("TASK_LOST", "REASON_RECONCILIATION", False, CLUSTER),
        ("TASK_UNKNOWN", "REASON_RECONCILIATION", False, CLUSTER),
        ("TASK_LOST", "REASON_LAUNCH_TIMEOUT", False, CLUSTER),
        ("TASK_FAILED", "REASON_MAX_COMPLETION_TIME_REACHED", False, TASK),
        # States that decide alone, and the fall-backs without a reason.
        ("TASK_ERROR", "REASON_TASK_INVALID", False, TASK),
        ("TASK_ERROR", "REASON_AGENT_REMOVED", False, TASK),
        ("TASK_GONE_BY_OPERATOR", None, False, CLUSTER),
        ("TASK_FAILED", None, False, TASK),
        ("TASK_FAILED", "REASON_NOT_YET_INVENTED", False, TASK),
        ("TASK_LOST", None, False, CLUSTER),
        ("TASK_KILLED", None, False, CLUSTER),
        ("TASK_KILLED", None, True, OPERATOR),
        ("TASK_FAILED", "REASON_CONTAINER_PREEMPTED", False, CLUSTER),
        ("TASK_FAILED", "REASON_AGENT_REMOVED", False, CLUSTER),
        # Not failures at all.
        ("TASK_FINISHED", None, False, None),
        ("TASK_FINISHED", None, True, None),
        ("TASK_RUNNING", None, False, None),
        ("TASK_UNREACHABLE", "REASON_AGENT_REMOVED", False, None),
        ("TASK_KILLING", None, True, None),
    ],
)
def test_classify_end(
    state: str, reason: str | None, kill_requested: bool, expected: FailureClass | None
) -> None:
    assert classify_end(state, reason, kill_requested=kill_requested) is expected


@pytest.mark.parametrize(("reason", "expected"), sorted(PROTO_REASONS.items()))
def test_every_proto_reason_has_a_class(reason: str, expected: FailureClass) -> None:
    assert classify_end("TASK_FAILED", reason, kill_requested=False) is expected
    assert classify_end("TASK_KILLED", reason, kill_requested=True) is OPERATOR


def test_no_reason_is_in_both_tables() -> None:
    assert not TASK_REASONS & CLUSTER_REASONS


def test_every_reason_the_simulator_sends_is_classified() -> None:
    source = Path(__file__).resolve().parents[2] / "simulator"
    sent = {
        reason
        for path in source.rglob("*.py")
        for reason in re.findall(r"\bREASON_[A-Z_]+\b", path.read_text())
    }
    assert sent, "the simulator sends no reason at all?"
    assert sent <= TASK_REASONS | CLUSTER_REASONS, sorted(sent - TASK_REASONS - CLUSTER_REASONS)
