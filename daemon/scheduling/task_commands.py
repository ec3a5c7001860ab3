"""Task commands and their pure resolution: what each change to a task does, decided from the
current task alone.

Every change to a task is one of these commands:

- queue (``TaskTracker.submit``): a new task, QUEUED;
- launch intent (``TaskTracker.plan_launch``): QUEUED -> LAUNCHING under a fresh attempt;
- launch result (``resolve_launch_result``): the ACCEPT was sent, surely not sent (the task goes
  back to the queue, its attempt spent), or its outcome is unknown (reconciled at once);
- status update and reconcile answer (``resolve_burst``, ``resolve``): a Mesos status moves the
  current attempt on, requeues it under the retry policy (by the end's failure class: the
  task's own failures count against ``max_attempts`` and wait out a back-off, the cluster's
  retry at once up to ``max_cluster_failures``, an operator's kill ends the task), or draws a
  KILL when it names an attempt that is not current; a stale one about an attempt that ended
  for good draws nothing;
- cancel and kill (``resolve_delete``): a queued task is canceled, a launched one gets a kill
  request (and a KILL once it is on an agent);
- launch timeout (``due_launch_timeouts``, ``still_silent``): a launch silent for
  ``launch_timeout`` is reconciled; silent as long again, the scheduler's own TASK_LOST for it
  goes through ``resolve_burst`` like any status.

Everything here is pure: no I/O, no clock (times come in as arguments), no logging, and no
change to the ``Task`` records it reads. ``TaskTracker`` commits what these functions decide, then
applies it to memory, and only then makes the Mesos calls (``task_effects``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scale_scheduler.daemon.mesos.failure_classes import FailureClass, classify_end
from scale_scheduler.daemon.mesos.mesos_task_states import (
    FINAL_MESOS_STATES,
    MESOS_STATES,
    ends_attempt,
)
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.scheduling.ended_attempts import EndedAttempts
from scale_scheduler.daemon.scheduling.retry_backoff import RetryBackoff
from scale_scheduler.state.changes import StatusChange
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.tasks import EndedAttempt, Task, parse_mesos_task_id, spec_decoder

DEFAULT_BACKOFF = RetryBackoff()
_EARLY = frozenset({TaskState.LAUNCHING, TaskState.STAGING, TaskState.STARTING})
_LATE = frozenset({TaskState.RUNNING, TaskState.KILLING})

Kill = tuple[str, "str | None", "float | None"]
"""A KILL to send: (Mesos task id, agent id, kill grace period in seconds or None)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried (``scheduler.max_cluster_failures`` and
    ``scheduler.retry_backoff_*``; a task may bring its own back-off)."""

    max_cluster_failures: int = 10
    backoff: RetryBackoff = DEFAULT_BACKOFF

    def backoff_of(self, task: Task) -> RetryBackoff:
        """The task's back-off: its own fields over the configured ones (its spec is decoded
        only when it names one, and only on a failure of its own)."""
        if b'"retry_backoff"' not in task.spec:
            return self.backoff
        own = spec_decoder.decode(task.spec).retry_backoff
        if own is None:
            return self.backoff
        default = self.backoff
        return RetryBackoff(
            default.initial if own.initial is None else own.initial,
            default.factor if own.factor is None else own.factor,
            default.maximum if own.max is None else own.max,
        )


def kill_grace(task: Task) -> float | None:
    """The task's ``kill_grace_period`` (None: the executor's default)."""
    if b'"kill_grace_period"' not in task.spec:
        return None
    return spec_decoder.decode(task.spec).kill_grace_period


# --- one status on the current attempt ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TaskState
    failures: int
    cluster_failures: int
    requeue: bool = False
    ignored: bool = False
    failure_class: FailureClass | None = None
    """Set when the status ended the attempt other than by a success."""


def resolve(
    current: TaskState,
    mesos_state: str,
    reason: str | None = None,
    *,
    failures: int,
    cluster_failures: int,
    max_attempts: int,
    kill_requested: bool,
    max_cluster_failures: int = 10,
) -> Outcome:
    """The effect of one Mesos status on a launched task of the current attempt.

    An end is classified (``failure_classes``): an operator's kill ends the task KILLED; a
    failure of the cluster's is retried at once while ``cluster_failures`` is under
    ``max_cluster_failures``; a failure of the task's own is retried while ``failures`` stays
    under ``max_attempts`` (ERROR, an invalid description, never is). A success ends it."""
    target = MESOS_STATES.get(mesos_state)
    if target is None or (target in _EARLY and current in _LATE):
        return Outcome(current, failures, cluster_failures, ignored=True)
    if not target.terminal:
        if kill_requested and current is TaskState.KILLING and target is TaskState.RUNNING:
            return Outcome(current, failures, cluster_failures, ignored=True)
        return Outcome(target, failures, cluster_failures, ignored=target is current)
    klass = classify_end(mesos_state, reason, kill_requested=kill_requested)
    if klass is None:
        return Outcome(target, failures, cluster_failures)
    if klass is FailureClass.OPERATOR:
        return Outcome(TaskState.KILLED, failures, cluster_failures, failure_class=klass)
    if klass is FailureClass.CLUSTER:
        if cluster_failures < max_cluster_failures:
            return Outcome(
                TaskState.QUEUED, failures, cluster_failures + 1, requeue=True, failure_class=klass
            )
        return Outcome(target, failures, cluster_failures + 1, failure_class=klass)
    if target is not TaskState.ERROR and failures + 1 < max_attempts:
        return Outcome(
            TaskState.QUEUED, failures + 1, cluster_failures, requeue=True, failure_class=klass
        )
    return Outcome(target, failures + 1, cluster_failures, failure_class=klass)


# --- a burst of status updates and reconcile answers --------------------------------------------


class WorkingTask(StatusChange):
    """A task's state while one burst is resolved; committed as it is (a ``StatusChange``)."""

    __slots__ = ("failure_class", "status", "task", "transitions")

    def __init__(self, task: Task) -> None:
        super().__init__(task.id, task.state, task.failures, task.cluster_failures)
        self.task = task
        self.failure_class: FailureClass | None = None
        """Why the attempt ended, when it ended other than by a success."""
        self.status: TaskStatus | None = None
        """The last status that changed the task in this burst."""
        self.transitions: list[tuple[TaskState, TaskState, TaskStatus]] = []

    def seal(self) -> None:
        """Copy the last status into the change's fields (once, before the commit)."""
        last = self.status
        if last is not None:
            self.status_state = last.state
            self.status_message = last.message
            self.status_reason = last.reason
            self.status_source = last.source
            self.status_time = last.timestamp

    @property
    def ended_for_good(self) -> bool:
        """The attempt ended (or was requeued) on a state it cannot come back from."""
        return (
            (self.requeue or self.state.terminal)
            and self.status is not None
            and self.status.state in FINAL_MESOS_STATES
        )


@dataclass(slots=True)
class BurstResolution:
    """What one burst decided: per task, its working record (``changed`` lists those whose state
    changed: the burst's write); the KILLs to send after the commit; and, for the log, the
    updates about attempts that are not current (``stale``: ended for good, acknowledged only;
    ``strays``: killed)."""

    working: dict[int, WorkingTask]
    changed: list[WorkingTask]
    kills: list[Kill]
    stale: list[TaskStatus]
    strays: list[TaskStatus]


DEFAULT_POLICY = RetryPolicy()


def resolve_burst(
    burst: Sequence[TaskStatus],
    tasks: Mapping[int, Task],
    ended: EndedAttempts,
    policy: RetryPolicy = DEFAULT_POLICY,
    now: float = 0.0,
) -> BurstResolution:
    """Resolve updates in order against the tasks as they are before the burst (``now``
    stamps the attempts that end and starts the retry back-offs)."""
    working: dict[int, WorkingTask] = {}
    kills: list[Kill] = []
    stale: list[TaskStatus] = []
    strays: list[TaskStatus] = []
    for status in burst:
        _resolve_one(status, tasks, ended, working, kills, stale, strays, policy, now)
    changed = [w for w in working.values() if w.transitions]
    for w in changed:
        w.seal()
    if kills:
        # Whatever this burst also says has ended needs no KILL.
        over = {s.task_id.value for s in burst if ends_attempt(s.state)}
        kills = [kill for kill in kills if kill[0] not in over]
    return BurstResolution(working, changed, kills, stale, strays)


def _resolve_one(
    status: TaskStatus,
    tasks: Mapping[int, Task],
    ended: EndedAttempts,
    working: dict[int, WorkingTask],
    kills: list[Kill],
    stale: list[TaskStatus],
    strays: list[TaskStatus],
    policy: RetryPolicy,
    now: float,
) -> None:
    mesos_id = status.task_id.value
    parsed = parse_mesos_task_id(mesos_id)
    task = tasks.get(parsed[0]) if parsed is not None else None
    w = working.get(task.id) if task is not None else None
    current = (
        task is not None
        and parsed is not None
        and parsed[1] == task.attempts
        and task.state.launched
        and (w is None or not (w.requeue or w.state.terminal))
    )
    if task is None or not current:
        if ends_attempt(status.state):
            return
        if _trails_a_final_end(parsed, task, w, ended):
            stale.append(status)
        else:
            strays.append(status)
            agent = status.agent_id.value if status.agent_id is not None else None
            kills.append((mesos_id, agent, None))
        return
    if w is None:
        w = working[task.id] = WorkingTask(task)
    outcome = resolve(
        w.state,
        status.state,
        status.reason,
        failures=w.failures,
        cluster_failures=w.cluster_failures,
        max_attempts=task.max_attempts,
        kill_requested=task.kill_requested,
        max_cluster_failures=policy.max_cluster_failures,
    )
    if (
        task.kill_requested
        and not outcome.state.terminal
        and not outcome.requeue
        and outcome.state is not TaskState.KILLING
        and task.agent_id
    ):
        kills.append((mesos_id, task.agent_id, kill_grace(task)))
    if outcome.ignored:
        return
    w.transitions.append((w.state, outcome.state, status))
    w.state = outcome.state
    w.failures, w.cluster_failures = outcome.failures, outcome.cluster_failures
    w.requeue = outcome.requeue
    w.status = status
    if outcome.state is TaskState.RUNNING:
        w.started = True
    klass = outcome.failure_class
    if klass is not None:
        ended_as = outcome.state if not outcome.requeue else MESOS_STATES[status.state]
        w.failure_class = klass
        w.ended_attempt = EndedAttempt(
            task.id,
            task.attempts,
            task.agent_id,
            task.hostname,
            task.launched or None,
            now,
            ended_as.value,
            status.reason,
            klass.value,
        )
        if outcome.requeue and klass is FailureClass.TASK:
            delay = policy.backoff_of(task).delay(outcome.failures)
            if delay > 0:
                w.next_attempt_at = now + delay


def _trails_a_final_end(
    parsed: tuple[int, int] | None,
    task: Task | None,
    w: WorkingTask | None,
    ended: EndedAttempts,
) -> bool:
    """Whether an update names an attempt that ended for good and is still its task's latest
    (an earlier attempt of a task that has moved on is a stray, whatever it says)."""
    if parsed is None:
        return False
    task_id, attempt = parsed
    if task is not None:
        if attempt != task.attempts:
            return False
        if w is not None and w.status is not None and (w.requeue or w.state.terminal):
            # Ended earlier in this very burst (not yet in ``ended``).
            return w.status.state in FINAL_MESOS_STATES
    return ended.has(task_id, attempt)


# --- launch results ----------------------------------------------------------------------------


class LaunchResult(str, enum.Enum):
    SENT = "SENT"
    """The master took the ACCEPT: Mesos's updates follow."""
    NOT_SENT = "NOT_SENT"
    """It surely took no effect (not connected, refused, a 4xx): back to the queue."""
    UNKNOWN = "UNKNOWN"
    """It may or may not have reached the master: reconcile now, the answer decides."""


def launch_pending(task: Task, attempt: int) -> bool:
    """Whether ``attempt`` is still the task's launch with no status yet (a revert or an
    immediate reconcile applies only then: a status may have arrived meanwhile)."""
    return task.state is TaskState.LAUNCHING and task.attempts == attempt


def kill_after_launch(task: Task, attempt: int) -> bool:
    """A DELETE reached the task while its launch was being sent: KILL it now that it is out."""
    return (
        task.kill_requested
        and task.state.launched
        and task.attempts == attempt
        and bool(task.agent_id)
    )


def doomed(tasks: Iterable[Task]) -> list[int]:
    """Tasks asked to die while their launch was in flight that are queued again: cancel them."""
    return [t.id for t in tasks if t.kill_requested and t.state is TaskState.QUEUED]


# --- cancel and kill ---------------------------------------------------------------------------


class DeleteAction(str, enum.Enum):
    CANCEL = "CANCEL"
    """Queued and not being launched: canceled in one write."""
    REQUEST_KILL = "REQUEST_KILL"
    """Launched (or being launched): the request is stored, a KILL follows when it can."""


def resolve_delete(task: Task) -> DeleteAction:
    if task.state is TaskState.QUEUED and not task.busy:
        return DeleteAction.CANCEL
    return DeleteAction.REQUEST_KILL


def kill_target(task: Task) -> Kill | None:
    """Where to send the KILL of a task whose kill request is stored: its current attempt on
    its agent, unless it is not launched yet (``launch_plans.finish_launches`` sends it then)."""
    if task.state.launched and not task.busy and task.agent_id:
        return (task.mesos_task_id, task.agent_id, kill_grace(task))
    return None


# --- launch timeouts ---------------------------------------------------------------------------


def due_launch_timeouts(
    launching: Iterable[Task], now: float, timeout: float
) -> tuple[list[Task], list[Task]]:
    """(launches to reconcile: silent for ``timeout``; launches to mark lost: still silent as
    long again after their reconcile)."""
    to_reconcile: list[Task] = []
    to_lose: list[Task] = []
    for task in launching:
        if task.busy or task.state is not TaskState.LAUNCHING:
            continue
        if task.reconcile_sent:
            if now - task.reconcile_sent >= timeout:
                to_lose.append(task)
        elif now - task.launched >= timeout:
            to_reconcile.append(task)
    return to_reconcile, to_lose


def still_silent(task: Task, attempt: int, tasks: Mapping[int, Task]) -> bool:
    """After the updates received meanwhile: the launch of ``attempt`` is still unanswered."""
    return tasks.get(task.id) is task and launch_pending(task, attempt) and not task.busy
