"""The task commands and their pure resolution, table-driven: every transition the README's
reliability table names (durable intent and its launch results, exactly one launch per Mesos
task id, reconciliation answers, launch timeouts, stale and stray updates, cancel and kill).
Nothing here touches a store, a driver or a clock."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from scale_scheduler.daemon.mesos.failure_classes import FailureClass
from scale_scheduler.daemon.mesos.mesos_task_states import ends_attempt, launch_timeout_status
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus, Value
from scale_scheduler.daemon.scheduling.ended_attempts import EndedAttempts
from scale_scheduler.daemon.scheduling.retry_backoff import RetryBackoff
from scale_scheduler.daemon.scheduling.task_commands import (
    DeleteAction,
    RetryPolicy,
    doomed,
    due_launch_timeouts,
    kill_after_launch,
    kill_target,
    launch_pending,
    resolve_burst,
    resolve_delete,
    still_silent,
)
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.tasks import BackoffSpec, EndedAttempt, Task, TaskSpec

S = TaskState
SHAPE = Shape(1.0, 128.0)


def task(task_id: int = 1, state: TaskState = S.LAUNCHING, attempts: int = 1, **kw: Any) -> Task:
    kw.setdefault("agent_id", "a1" if state.launched else None)
    kw.setdefault("max_attempts", 3)
    return Task(task_id, 100, SHAPE, b"{}", state, attempts=attempts, **kw)


def st(mesos_id: str, state: str, **kw: Any) -> TaskStatus:
    return TaskStatus(task_id=Value(mesos_id), state=state, agent_id=Value("a1"), **kw)


# Each row: the task before, the burst, then what resolution decides for task 1:
# (new state or None when unchanged, requeued, failures, cluster failures), the KILLs, and how
# many updates were stale (acknowledged only) and stray (killed).
BURSTS = [
    pytest.param(
        task(state=S.LAUNCHING),
        [st("1-1", "TASK_STAGING"), st("1-1", "TASK_RUNNING")],
        (S.RUNNING, False, 0, 0),
        [],
        (0, 0),
        id="launch-confirmed-by-mesos",
    ),
    pytest.param(
        task(state=S.LAUNCHING),
        [st("1-1", "TASK_LOST", reason="REASON_RECONCILIATION")],
        (S.QUEUED, True, 0, 1),
        [],
        (0, 0),
        id="unknown-outcome-reconciled-lost-relaunches-free",
    ),
    pytest.param(
        task(state=S.LAUNCHING),
        [st("1-1", "TASK_UNKNOWN")],
        (S.QUEUED, True, 0, 1),
        [],
        (0, 0),
        id="reconcile-answer-unknown-is-lost",
    ),
    pytest.param(
        task(state=S.LAUNCHING),
        [st("1-1", "TASK_RUNNING", reason="REASON_RECONCILIATION")],
        (S.RUNNING, False, 0, 0),
        [],
        (0, 0),
        id="unknown-outcome-reconciled-running-is-followed",
    ),
    pytest.param(
        task(state=S.LAUNCHING, cluster_failures=3),
        [launch_timeout_status("1-1", "a1", 5.0)],
        (S.QUEUED, True, 0, 4),
        [],
        (0, 0),
        id="launch-timeout-lost-is-the-clusters-failure",
    ),
    pytest.param(
        task(state=S.RUNNING, failures=2),
        [st("1-1", "TASK_FAILED")],
        (S.FAILED, False, 3, 0),
        [],
        (0, 0),
        id="retries-exhausted",
    ),
    pytest.param(
        task(state=S.RUNNING, attempts=2),
        [st("1-1", "TASK_RUNNING")],
        (None, False, 0, 0),
        [("1-1", "a1", None)],
        (0, 1),
        id="old-attempt-reporting-is-killed",
    ),
    pytest.param(
        task(state=S.RUNNING, attempts=2),
        [st("1-1", "TASK_FAILED")],
        (None, False, 0, 0),
        [],
        (0, 0),
        id="terminal-update-never-draws-a-kill",
    ),
    pytest.param(
        task(state=S.RUNNING),
        [st("7-1", "TASK_RUNNING"), st("junk", "TASK_RUNNING")],
        (None, False, 0, 0),
        [("7-1", "a1", None), ("junk", "a1", None)],
        (0, 2),
        id="unknown-tasks-are-killed",
    ),
    pytest.param(
        task(state=S.RUNNING),
        [st("1-1", "TASK_FINISHED"), st("1-1", "TASK_RUNNING")],
        (S.FINISHED, False, 0, 0),
        [],
        (1, 0),
        id="reordered-after-the-end-in-one-burst-is-stale",
    ),
    pytest.param(
        task(state=S.RUNNING),
        [st("1-1", "TASK_LOST"), st("1-1", "TASK_RUNNING")],
        (S.QUEUED, True, 0, 1),
        [],  # the same burst says the attempt ended: no KILL
        (0, 1),
        id="lost-then-running-in-one-burst-draws-no-kill",
    ),
    pytest.param(
        task(state=S.QUEUED, attempts=1),
        [st("1-1", "TASK_RUNNING")],
        (None, False, 0, 0),
        [("1-1", "a1", None)],
        (0, 1),
        id="lost-attempt-coming-back-after-requeue-is-killed",
    ),
    pytest.param(
        task(state=S.RUNNING, kill_requested=True),
        [st("1-1", "TASK_RUNNING")],
        (None, False, 0, 0),
        [("1-1", "a1", None)],
        (0, 0),
        id="kill-requested-task-still-running-is-killed-again",
    ),
    pytest.param(
        task(state=S.RUNNING, kill_requested=True),
        [st("1-1", "TASK_RUNNING"), st("1-1", "TASK_FAILED")],
        (S.KILLED, False, 0, 0),
        [],
        (0, 0),
        id="kill-requested-end-is-killed-and-no-kill-once-ended",
    ),
    pytest.param(
        task(state=S.RUNNING),
        [st("1-1", "TASK_STARTING")],
        (None, False, 0, 0),
        [],
        (0, 0),
        id="late-early-state-is-ignored",
    ),
]


@pytest.mark.parametrize(("before", "burst", "expected", "kills", "stale_strays"), BURSTS)
def test_status_burst_resolution(
    before: Task,
    burst: list[TaskStatus],
    expected: tuple[TaskState | None, bool, int, int],
    kills: list[tuple[str, str]],
    stale_strays: tuple[int, int],
) -> None:
    untouched = msgspec.structs.replace(before)
    resolution = resolve_burst(burst, {before.id: before}, EndedAttempts())
    assert before == untouched  # pure: the record is read, never changed
    state, requeue, failures, lost = expected
    if state is None:
        assert resolution.changed == []
    else:
        (change,) = resolution.changed
        assert (change.state, change.requeue) == (state, requeue)
        assert (change.failures, change.cluster_failures) == (failures, lost)
        assert change.status_state == change.transitions[-1][2].state  # sealed for the commit
    assert resolution.kills == kills
    assert (len(resolution.stale), len(resolution.strays)) == stale_strays


def test_an_update_after_a_final_end_remembered_is_stale_not_killed() -> None:
    ended = EndedAttempts()
    ended.add(1, 1)
    resolution = resolve_burst([st("1-1", "TASK_RUNNING")], {}, ended)
    assert (resolution.kills, len(resolution.stale)) == ([], 1)


def test_the_scheduler_made_lost_status() -> None:
    status = launch_timeout_status("4-2", None, 12.5)
    assert (status.state, status.source, status.reason) == (
        "TASK_LOST",
        "SOURCE_SCHEDULER",
        "REASON_LAUNCH_TIMEOUT",
    )
    assert (status.agent_id, status.timestamp, status.uuid) == (None, 12.5, None)
    assert ends_attempt(status.state)
    assert ends_attempt("TASK_UNKNOWN")
    assert not ends_attempt("TASK_RUNNING")


@pytest.mark.parametrize(
    ("before", "action", "target"),
    [
        (task(state=S.QUEUED, attempts=0), DeleteAction.CANCEL, None),
        (task(state=S.QUEUED, attempts=0, busy=True), DeleteAction.REQUEST_KILL, None),
        (task(state=S.LAUNCHING, busy=True), DeleteAction.REQUEST_KILL, None),
        (task(state=S.RUNNING, attempts=2), DeleteAction.REQUEST_KILL, ("1-2", "a1", None)),
        (task(state=S.UNREACHABLE), DeleteAction.REQUEST_KILL, ("1-1", "a1", None)),
    ],
)
def test_cancel_and_kill(
    before: Task, action: DeleteAction, target: tuple[str, str] | None
) -> None:
    assert resolve_delete(before) is action
    assert kill_target(before) == target


@pytest.mark.parametrize(
    ("before", "attempt", "pending", "kill_now", "cancel"),
    [
        (task(state=S.LAUNCHING, attempts=2), 2, True, False, False),  # sent, no status yet
        (task(state=S.RUNNING, attempts=2), 2, False, False, False),  # a status came first
        (task(state=S.LAUNCHING, attempts=3), 2, False, False, False),  # another attempt now
        (task(state=S.LAUNCHING, kill_requested=True), 1, True, True, False),  # killed in flight
        (task(state=S.QUEUED, kill_requested=True), 1, False, False, True),  # reverted: cancel
    ],
)
def test_launch_results(
    before: Task, attempt: int, pending: bool, kill_now: bool, cancel: bool
) -> None:
    assert launch_pending(before, attempt) is pending
    assert kill_after_launch(before, attempt) is kill_now
    assert doomed([before]) == ([before.id] if cancel else [])


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        (task(launched=100.0), 129.0, "wait"),
        (task(launched=100.0), 130.0, "reconcile"),
        (task(launched=100.0, reconcile_sent=130.0), 159.0, "wait"),
        (task(launched=100.0, reconcile_sent=130.0), 160.0, "lose"),
        (task(launched=100.0, busy=True), 500.0, "wait"),
        (task(state=S.STAGING, launched=100.0), 500.0, "wait"),
    ],
)
def test_launch_timeouts(before: Task, now: float, expected: str) -> None:
    to_reconcile, to_lose = due_launch_timeouts([before], now, 30.0)
    decided = "reconcile" if to_reconcile else "lose" if to_lose else "wait"
    assert decided == expected
    if expected == "lose":
        assert still_silent(before, before.attempts, {before.id: before})
        answered = msgspec.structs.replace(before, state=S.RUNNING)
        assert not still_silent(answered, before.attempts, {before.id: answered})


# --- failure classes, back-off and attempt history in a burst -----------------------------------


def test_a_failure_of_its_own_waits_out_the_back_off_and_records_the_attempt() -> None:
    before = task(state=S.RUNNING, failures=2, max_attempts=5, hostname="h1", launched=90.0)
    policy = RetryPolicy(backoff=RetryBackoff(1.0, 2.0, 300.0))
    resolution = resolve_burst(
        [st("1-1", "TASK_FAILED", reason="REASON_COMMAND_EXECUTOR_FAILED")],
        {1: before},
        EndedAttempts(),
        policy,
        100.0,
    )
    (change,) = resolution.changed
    assert (change.state, change.requeue, change.failures) == (S.QUEUED, True, 3)
    assert change.next_attempt_at == 100.0 + 4.0  # the third failure: 1 x 2 x 2
    assert change.failure_class is FailureClass.TASK
    assert change.ended_attempt == EndedAttempt(
        1, 1, "a1", "h1", 90.0, 100.0, "FAILED", "REASON_COMMAND_EXECUTOR_FAILED", "task"
    )


def test_a_failure_of_the_clusters_retries_at_once() -> None:
    before = task(state=S.RUNNING, failures=2, max_attempts=3)
    resolution = resolve_burst(
        [st("1-1", "TASK_LOST", reason="REASON_AGENT_REMOVED")], {1: before}, EndedAttempts()
    )
    (change,) = resolution.changed
    assert (change.state, change.requeue, change.failures, change.cluster_failures) == (
        S.QUEUED,
        True,
        2,
        1,
    )
    assert change.next_attempt_at is None
    assert change.ended_attempt is not None
    assert change.ended_attempt.failure_class == "cluster"


def test_a_task_brings_its_own_back_off() -> None:
    spec = msgspec.json.encode(
        TaskSpec(name="t", retry_backoff=BackoffSpec(initial=10.0, max=15.0))
    )
    before = msgspec.structs.replace(task(state=S.RUNNING, max_attempts=9), spec=spec)
    policy = RetryPolicy(backoff=RetryBackoff(1.0, 2.0, 300.0))
    assert policy.backoff_of(before) == RetryBackoff(10.0, 2.0, 15.0)
    assert policy.backoff_of(task()) is policy.backoff  # no spec decoded without one
    failing = msgspec.structs.replace(before, failures=3)
    resolution = resolve_burst([st("1-1", "TASK_FAILED")], {1: failing}, EndedAttempts(), policy, 0)
    assert resolution.changed[0].next_attempt_at == 15.0  # 10 x 2^3, at most 15


def test_a_kill_carries_the_tasks_grace_period() -> None:
    spec = msgspec.json.encode(TaskSpec(name="t", kill_grace_period=7.5))
    before = msgspec.structs.replace(task(state=S.RUNNING), spec=spec, kill_requested=True)
    assert kill_target(before) == ("1-1", "a1", 7.5)
    assert kill_target(task(state=S.RUNNING, kill_requested=True)) == ("1-1", "a1", None)
