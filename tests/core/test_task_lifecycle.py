"""Issue 17's task lifecycle in the core, on both state backends where it touches the state: the
retry preference for new hosts in the matcher, the retry waits' heap, the back-off that
survives a restart, the daemon's own run-time limit, the bounded attempt history, and the
request body's new fields."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from corekit import CoreHarness, make_offer, new_task, status

from scale_scheduler.api.task_body import RetryBackoffIn, TaskIn, task_problem, to_new_task
from scale_scheduler.daemon.scheduling.core_facade import with_reason
from scale_scheduler.daemon.scheduling.matcher import MatchSettings, match
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.daemon.scheduling.retry_waits import RetryWaits
from scale_scheduler.daemon.scheduling.runtime_limits import RUNTIME_LIMIT_MARGIN
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.scheduling.task_values import NewTask
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.tasks import ATTEMPT_HISTORY, BackoffSpec, Task, TaskSpec, new_task_view

SETTINGS = MatchSettings(refuse_seconds=5.0, idle_refuse_seconds=120.0)
SHAPE = Shape(1.0, 128.0)


def queued(*ids: int) -> tuple[QueueIndex, dict[int, Task]]:
    tasks = {i: Task(i, 100, SHAPE, b"{}", TaskState.QUEUED, 3) for i in ids}
    index = QueueIndex(tasks)
    for task in tasks.values():
        index.add(task)
    return index, tasks


def hosts_of(result: object, ids: list[int]) -> dict[int, str]:
    found = {}
    for launch in result.launches:  # type: ignore[attr-defined]
        for placement in launch.placements:
            found[placement.task_id] = launch.hostname
    return {i: found.get(i, "") for i in ids}


# --- retries on a new host ---------------------------------------------------------------------


def test_a_retry_avoids_the_host_it_failed_on_when_another_fits() -> None:
    index, _ = queued(1, 2, 3)
    offers = [make_offer("o1", "a1", cpus=8, mem=4096), make_offer("o2", "a2", cpus=8, mem=4096)]
    result = match(
        offers,
        index,
        scheduler_paused=False,
        blocked_hosts={},
        settings=SETTINGS,
        avoid={2: {"host-a1"}},
    )
    # First fit puts all three on a1; task 2 failed there, so it goes to a2.
    assert hosts_of(result, [1, 2, 3]) == {1: "host-a1", 2: "host-a2", 3: "host-a1"}


def test_a_retry_goes_back_when_no_other_host_fits() -> None:
    index, _ = queued(1)
    offers = [make_offer("o1", "a1", cpus=8, mem=4096), make_offer("o2", "a2", cpus=0.5)]
    result = match(
        offers,
        index,
        scheduler_paused=False,
        blocked_hosts={},
        settings=SETTINGS,
        avoid={1: {"host-a1"}},
    )
    assert hosts_of(result, [1]) == {1: "host-a1"}


def test_the_preference_holds_when_groups_are_merged() -> None:
    tasks = {
        1: Task(1, 100, SHAPE, b"{}", TaskState.QUEUED, 3),
        2: Task(2, 100, Shape(2.0, 128.0), b"{}", TaskState.QUEUED, 3),
    }
    index = QueueIndex(tasks)
    for task in tasks.values():
        index.add(task)
    offers = [make_offer("o1", "a1", cpus=8, mem=4096), make_offer("o2", "a2", cpus=8, mem=4096)]
    result = match(
        offers,
        index,
        scheduler_paused=False,
        blocked_hosts={},
        settings=SETTINGS,
        avoid={2: {"host-a1"}},
    )
    assert hosts_of(result, [1, 2]) == {1: "host-a1", 2: "host-a2"}


async def test_a_retry_still_avoids_the_host_it_failed_on_after_a_restart(
    harness: CoreHarness,
) -> None:
    """The hosts to avoid are rebuilt from the stored attempt history when the core loads."""
    core = await harness.start()
    views = await core.tracker.submit(
        [new(max_attempts=3, retry_backoff=BackoffSpec(initial=5.0)), new(max_attempts=3)]
    )
    failing, other = views[0].id, views[1].id
    await harness.offer_pass(make_offer("o1", "a1"))
    await harness.updates(status(f"{failing}-1", "TASK_FAILED"))
    assert core.board.failed_hosts.by_task == {failing: {"host-a1"}}
    await core.stop()

    again = SchedulerCore(
        harness.config, harness.state, harness.scheduler, harness.driver, harness.clock
    )
    harness.core = again
    await again.start()
    assert again.board.failed_hosts.by_task == {failing: {"host-a1"}}  # not the running task's
    harness.clock.advance(5.0)
    assert again.timers.release_due_retries() == 1
    await harness.offer_pass(make_offer("o2", "a1"), make_offer("o3", "a2"))
    assert again.board.tasks[failing].attempts == 2
    assert again.board.tasks[failing].hostname == "host-a2"  # first fit alone would take a1
    assert again.board.tasks[other].hostname == "host-a1"


# --- the retry waits ---------------------------------------------------------------------------


def test_retry_waits_hand_back_tasks_as_they_come_due() -> None:
    waits = RetryWaits()
    tasks = [
        Task(i, 100, SHAPE, b"{}", TaskState.QUEUED, 3, next_attempt_at=t)
        for i, t in [(1, 10.0), (2, 5.0), (3, 20.0)]
    ]
    for task in tasks:
        waits.add(task)
    assert [t.id for t in waits.waiting()] == [2, 1, 3]
    assert waits.due(4.9) == []
    assert [t.id for t in waits.due(10.0)] == [2, 1]
    assert tasks[0].next_attempt_at == 0.0
    waits.discard(3)  # canceled while it waits
    assert waits.due(100.0) == []
    assert len(waits) == 0


# --- the back-off survives a restart -----------------------------------------------------------


async def test_a_waiting_retry_survives_a_restart(harness: CoreHarness) -> None:
    core = await harness.start()
    views = await core.tracker.submit(
        [new(max_attempts=3, retry_backoff=BackoffSpec(initial=60.0))]
    )
    task_id = views[0].id
    await harness.offer_pass(make_offer("o1", "a1"))
    await harness.updates(status(f"{task_id}-1", "TASK_FAILED"))
    due = harness.clock.now + 60.0
    assert core.board.tasks[task_id].next_attempt_at == due
    view = await harness.state.task(task_id)
    assert view is not None
    assert view.next_attempt_at is not None
    await core.stop()

    again = SchedulerCore(
        harness.config, harness.state, harness.scheduler, harness.driver, harness.clock
    )
    harness.core = again
    await again.start()
    assert task_id in again.board.retry_waits
    assert again.queue_depth == 1
    reason = again.board.waiting_reason(again.board.tasks[task_id], False)
    assert reason is not None
    assert reason.startswith("retry back-off until ")
    await harness.offer_pass(make_offer("o2", "a1"))
    assert harness.driver.launched_ids() == [f"{task_id}-1"]  # still waiting
    harness.clock.advance(60.0)
    assert again.timers.release_due_retries() == 1
    await harness.offer_pass(make_offer("o3", "a2"))
    assert harness.driver.launched_ids() == [f"{task_id}-1", f"{task_id}-2"]


# --- the daemon's own run-time limit -----------------------------------------------------------


async def test_the_daemon_ends_a_task_past_its_runtime_when_the_master_does_not(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    views = await core.tracker.submit([new(max_runtime=10.0, kill_grace_period=2.0)])
    task_id = views[0].id
    await harness.offer_pass(make_offer("o1", "a1"))
    (launch,) = harness.driver.of("accept")
    info = launch[1].tasks[0]
    assert info.max_completion_time.nanoseconds == 10_000_000_000
    assert info.kill_policy.grace_period.nanoseconds == 2_000_000_000
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    harness.clock.advance(10.0 + RUNTIME_LIMIT_MARGIN - 0.1)
    await core.timers.enforce_runtime_limits()
    assert core.board.tasks[task_id].state is TaskState.RUNNING  # not yet
    harness.clock.advance(0.1)
    await core.timers.enforce_runtime_limits()
    assert task_id not in core.board.tasks
    view = await harness.state.task(task_id)
    assert view is not None
    assert view.state == "FAILED"
    assert view.last_status is not None
    assert view.last_status.reason == "REASON_MAX_COMPLETION_TIME_REACHED"
    assert view.attempt_history[-1].failure_class == "task"
    assert harness.driver.of("kill") == [("kill", f"{task_id}-1", "a1", 2.0)]
    # Mesos's own end arriving later is stale: acknowledged, nothing killed again.
    await harness.updates(status(f"{task_id}-1", "TASK_KILLED"))
    assert len(harness.driver.of("kill")) == 1


# --- attempt history ---------------------------------------------------------------------------


async def test_attempt_history_keeps_the_last_attempts(harness: CoreHarness) -> None:
    core = await harness.start()
    views = await core.tracker.submit(
        [new(max_attempts=1000, retry_backoff=BackoffSpec(initial=0.0))]
    )
    task_id = views[0].id
    total = ATTEMPT_HISTORY + 3
    for attempt in range(1, total + 1):
        await harness.offer_pass(make_offer(f"o{attempt}", "a1"))
        await harness.updates(status(f"{task_id}-{attempt}", "TASK_FAILED"))
    view = await harness.state.task(task_id)
    assert view is not None
    assert [a.attempt for a in view.attempt_history] == list(range(4, total + 1))
    assert {a.failure_class for a in view.attempt_history} == {"task"}
    assert view.failures == total


# --- the request body --------------------------------------------------------------------------


def body(**extra: object) -> TaskIn:
    return TaskIn(name="t", cpus=1.0, mem=64.0, command="true", **extra)  # type: ignore[arg-type]


def test_the_lifecycle_fields_reach_the_spec() -> None:
    item = body(kill_grace_period=5.0, max_runtime=60.0)
    spec = to_new_task(item).spec
    assert (spec.kill_grace_period, spec.max_runtime) == (5.0, 60.0)


@pytest.mark.parametrize(
    ("backoff", "problem"),
    [
        ({"initial": 10.0, "max": 5.0}, "max must be between initial"),
        ({"initial": 1.0, "factor": 2.0, "max": 3.0}, None),
    ],
)
def test_a_bad_retry_backoff_is_named(backoff: dict[str, float], problem: str | None) -> None:
    found = task_problem(body(retry_backoff=RetryBackoffIn(**backoff)))
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found[0] == "retry_backoff"
        assert problem in found[1]


def new(**kw: Any) -> NewTask:
    return new_task("t", **kw)


# --- kill grace --------------------------------------------------------------------------------


@pytest.mark.parametrize(("after", "late"), [(6.0, 0), (7.5, 1)])
async def test_a_kill_that_ends_long_after_its_grace_period_is_counted(
    harness: CoreHarness, after: float, late: int
) -> None:
    core = await harness.start()
    views = await core.tracker.submit([new(kill_grace_period=1.0)])
    task_id = views[0].id
    await harness.offer_pass(make_offer("o1", "a1"))
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    await core.tracker.delete(task_id)
    assert harness.driver.of("kill") == [("kill", f"{task_id}-1", "a1", 1.0)]
    harness.clock.advance(after)  # the grace (1 s) plus the slack (5 s) is the limit
    await harness.updates(status(f"{task_id}-1", "TASK_KILLED"))
    assert core.timers.kills_past_grace == late


def test_an_entry_left_in_the_index_does_not_launch_a_waiting_task() -> None:
    """A launch that fails before the pass that made it compacts the index leaves the task's
    old entry there: while the task waits out its back-off, that entry is dead."""
    index, tasks = queued(1)
    tasks[1].next_attempt_at = 50.0  # requeued with a wait; its first entry is still there
    assert list(index.eligible(next(index.groups()))) == []
    assert list(index.queued()) == []
    index.compact()
    assert not tasks[1].indexed
    tasks[1].next_attempt_at = 0.0  # the wait is over
    index.add(tasks[1])
    assert list(index.eligible(next(index.groups()))) == [1]


def test_the_view_shows_next_attempt_at_only_while_the_task_waits() -> None:
    stored = new_task_view(1, TaskSpec(name="t"), 100, SHAPE, 3, 0.0)
    stored = msgspec.structs.replace(stored, next_attempt_at="2026-01-01T00:00:05.000Z")
    waiting = with_reason(stored, "retry back-off until 2026-01-01T00:00:05.000Z")
    assert waiting.next_attempt_at == "2026-01-01T00:00:05.000Z"
    assert with_reason(stored, "waiting for an offer").next_attempt_at is None
    killed = msgspec.structs.replace(stored, state="RUNNING", kill_requested=True)
    assert with_reason(killed, None).state == "KILLING"
