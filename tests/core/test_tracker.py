"""Task tracking: the status state machine, persist-then-ack, retries, kills (and no kill for
stale updates of ended attempts), reconciliation, launch timeouts, cancel/kill, and reloading
live tasks after a restart."""

from __future__ import annotations

import asyncio

import pytest
from corekit import CoreHarness, make_offer, status, wait_for

from scale_scheduler.daemon.mesos.failure_classes import FailureClass
from scale_scheduler.daemon.scheduling.ended_attempts import EndedAttempts
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.scheduling.task_commands import resolve
from scale_scheduler.daemon.scheduling.task_values import DeleteOutcome, TaskNotFoundError
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.tasks import parse_mesos_task_id

S = TaskState


@pytest.mark.parametrize(
    ("current", "mesos", "kwargs", "expected"),
    [
        (S.LAUNCHING, "TASK_STAGING", {}, (S.STAGING, False, 0, 0)),
        (S.STAGING, "TASK_RUNNING", {}, (S.RUNNING, False, 0, 0)),
        (S.RUNNING, "TASK_STARTING", {}, (S.RUNNING, False, 0, 0)),  # late, out of order
        (S.RUNNING, "TASK_FINISHED", {}, (S.FINISHED, False, 0, 0)),
        (S.RUNNING, "TASK_ERROR", {"max_attempts": 5}, (S.ERROR, False, 1, 0)),
        # The task's own failures count against max_attempts.
        (S.RUNNING, "TASK_FAILED", {}, (S.FAILED, False, 1, 0)),
        (S.RUNNING, "TASK_FAILED", {"max_attempts": 2}, (S.QUEUED, True, 1, 0)),
        (S.LAUNCHING, "TASK_FAILED", {}, (S.FAILED, False, 1, 0)),
        (
            S.RUNNING,
            "TASK_FAILED",
            {"reason": "REASON_MAX_COMPLETION_TIME_REACHED"},
            (S.FAILED, False, 1, 0),
        ),
        # The cluster's are retried at once, apart from max_attempts, up to their own limit.
        (S.RUNNING, "TASK_LOST", {"failures": 1}, (S.QUEUED, True, 1, 1)),
        (S.RUNNING, "TASK_GONE", {}, (S.QUEUED, True, 0, 1)),
        (S.RUNNING, "TASK_DROPPED", {}, (S.QUEUED, True, 0, 1)),
        (S.RUNNING, "TASK_UNKNOWN", {}, (S.QUEUED, True, 0, 1)),
        (S.LAUNCHING, "TASK_LOST", {}, (S.QUEUED, True, 0, 1)),
        (
            S.RUNNING,
            "TASK_KILLED",
            {"reason": "REASON_CONTAINER_PREEMPTED"},
            (S.QUEUED, True, 0, 1),
        ),
        (
            S.RUNNING,
            "TASK_FAILED",
            {"reason": "REASON_AGENT_REMOVED"},
            (S.QUEUED, True, 0, 1),
        ),
        (S.RUNNING, "TASK_LOST", {"cluster_failures": 10}, (S.LOST, False, 0, 11)),
        (
            S.RUNNING,
            "TASK_LOST",
            {"cluster_failures": 2, "max_cluster_failures": 2},
            (S.LOST, False, 0, 3),
        ),
        (S.RUNNING, "TASK_UNREACHABLE", {}, (S.UNREACHABLE, False, 0, 0)),
        (S.UNREACHABLE, "TASK_RUNNING", {}, (S.RUNNING, False, 0, 0)),
        # Asked to die: whatever ends it, it ends KILLED and is not retried.
        (
            S.RUNNING,
            "TASK_LOST",
            {"kill_requested": True, "max_attempts": 9},
            (S.KILLED, False, 0, 0),
        ),
        (S.RUNNING, "TASK_KILLED", {"kill_requested": True}, (S.KILLED, False, 0, 0)),
        (S.RUNNING, "TASK_FINISHED", {"kill_requested": True}, (S.FINISHED, False, 0, 0)),
        # Being killed: a late RUNNING does not take it out of KILLING.
        (S.KILLING, "TASK_RUNNING", {"kill_requested": True}, (S.KILLING, False, 0, 0)),
    ],
)
def test_resolve(
    current: TaskState,
    mesos: str,
    kwargs: dict[str, object],
    expected: tuple[TaskState, bool, int, int],
) -> None:
    args: dict[str, object] = {
        "failures": 0,
        "cluster_failures": 0,
        "max_attempts": 1,
        "kill_requested": False,
    }
    args.update(kwargs)
    reason = args.pop("reason", None)
    outcome = resolve(current, mesos, reason, **args)  # type: ignore[arg-type]
    assert (outcome.state, outcome.requeue, outcome.failures, outcome.cluster_failures) == expected


def test_resolve_names_the_failure_class() -> None:
    kw = {"failures": 0, "cluster_failures": 0, "max_attempts": 3, "kill_requested": False}
    assert resolve(S.RUNNING, "TASK_FAILED", **kw).failure_class is FailureClass.TASK  # type: ignore[arg-type]
    assert resolve(S.RUNNING, "TASK_GONE", **kw).failure_class is FailureClass.CLUSTER  # type: ignore[arg-type]
    assert resolve(S.RUNNING, "TASK_FINISHED", **kw).failure_class is None  # type: ignore[arg-type]
    kw["kill_requested"] = True
    assert resolve(S.RUNNING, "TASK_KILLED", **kw).failure_class is FailureClass.OPERATOR  # type: ignore[arg-type]


def test_resolve_ignores_repeats_and_unknown_states() -> None:
    kw = {"failures": 0, "cluster_failures": 0, "max_attempts": 1, "kill_requested": False}
    assert resolve(S.RUNNING, "TASK_RUNNING", **kw).ignored  # type: ignore[arg-type]
    assert resolve(S.RUNNING, "TASK_SOMETHING_NEW", **kw).ignored  # type: ignore[arg-type]


async def launch(h: CoreHarness, count: int = 1, agent: str = "a1", **kw: object) -> list[int]:
    ids = await h.submit(count, **kw)
    await h.offer_pass(make_offer(f"o-{ids[0]}", agent, cpus=count * 4, mem=count * 4096))
    return ids


async def test_submit_is_durable_and_depth_matches_database(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await harness.submit(25)
    assert ids == list(range(1, 26))
    assert core.queue_depth == 25 == await harness.db_count("QUEUED")
    await harness.offer_pass(make_offer("o1", "a1", cpus=10, mem=100000))
    assert core.queue_depth == 15 == await harness.db_count("QUEUED")
    assert await harness.db_count("LAUNCHING") == 10


async def test_update_is_committed_before_it_is_acknowledged(harness: CoreHarness) -> None:
    await harness.start()
    (task_id,) = await launch(harness)
    harness.log.clear()
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING", uuid="dTE="))
    kinds = [entry[0] for entry in harness.log]
    assert kinds == ["commit", "ack"]
    assert harness.log[1] == ("ack", "a1", f"{task_id}-1", "dTE=")
    assert (await harness.db_state(task_id))[0] == "RUNNING"


async def test_burst_of_updates_is_one_commit_then_acks(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await launch(harness, 20)
    harness.log.clear()
    burst = [status(f"{i}-1", s) for i in ids for s in ("TASK_STARTING", "TASK_RUNNING")]
    burst += [status(f"{i}-1", "TASK_FINISHED") for i in ids]
    await harness.updates(*burst)
    kinds = [entry[0] for entry in harness.log]
    assert kinds.count("commit") == 1
    assert kinds[0] == "commit"
    assert kinds.count("ack") == len(burst)
    assert await harness.db_count("FINISHED") == 20
    assert not core.board.tasks  # terminal tasks leave memory


async def test_repeated_updates_are_harmless_and_only_uuid_updates_are_acked(
    harness: CoreHarness,
) -> None:
    await harness.start()
    (task_id,) = await launch(harness)
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    harness.log.clear()
    await harness.updates(
        status(f"{task_id}-1", "TASK_RUNNING"), status(f"{task_id}-1", "TASK_RUNNING", uuid=None)
    )
    assert [entry[0] for entry in harness.log] == ["ack"]  # nothing to persist; one uuid
    await harness.updates(status(f"{task_id}-1", "TASK_FINISHED"))
    harness.log.clear()
    await harness.updates(status(f"{task_id}-1", "TASK_FINISHED"))  # re-sent after a lost ack
    assert [entry[0] for entry in harness.log] == ["ack"]  # no kill in answer to terminal
    assert (await harness.db_state(task_id))[0] == "FINISHED"


async def test_failed_task_is_retried_with_a_fresh_mesos_id(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness, max_attempts=2)
    await harness.updates(
        status(f"{task_id}-1", "TASK_RUNNING"), status(f"{task_id}-1", "TASK_FAILED")
    )
    assert core.queue_depth == 1
    assert await harness.db_state(task_id) == ("QUEUED", 1, 1, None, 0)
    # It waits out its retry back-off (1 s by default) outside the queue index.
    await harness.offer_pass(make_offer("o2", "a2"))
    assert harness.driver.launched_ids() == [f"{task_id}-1"]
    harness.clock.advance(1.0)
    assert core.timers.release_due_retries() == 1
    await harness.offer_pass(make_offer("o3", "a2"))
    assert harness.driver.launched_ids() == [f"{task_id}-1", f"{task_id}-2"]
    await harness.updates(status(f"{task_id}-2", "TASK_FAILED", agent="a2"))
    assert await harness.db_state(task_id) == ("FAILED", 2, 2, "a2", 0)
    assert core.queue_depth == 0


async def test_unknown_and_stale_tasks_are_killed_unless_terminal(harness: CoreHarness) -> None:
    await harness.start()
    (task_id,) = await launch(harness, max_attempts=2)
    await harness.updates(status(f"{task_id}-1", "TASK_LOST"))  # requeued (free retry)
    await harness.offer_pass(make_offer("o2", "a1"))
    harness.log.clear()
    await harness.updates(
        status("999-1", "TASK_RUNNING"),  # never ours
        status("not-ours", "TASK_RUNNING"),
        status(f"{task_id}-1", "TASK_RUNNING"),  # a past attempt came back
        status("998-1", "TASK_FINISHED"),  # terminal: never killed
    )
    kills = harness.driver.of("kill")
    assert sorted(k[1] for k in kills) == sorted(["999-1", "not-ours", f"{task_id}-1"])
    assert (await harness.db_state(task_id))[0] == "LAUNCHING"  # the current attempt is intact


async def test_terminal_state_releases_scheduled_resources(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await launch(harness, 2, cpus=1.5, mem=256)
    node = core.nodes.by_hostname["host-a1"]
    assert (node.scheduled.cpus, node.scheduled.mem, node.running_tasks) == (3.0, 512.0, 2)
    await harness.updates(status(f"{ids[0]}-1", "TASK_FINISHED"))
    assert (node.scheduled.cpus, node.scheduled.mem, node.running_tasks) == (1.5, 256.0, 1)
    await harness.updates(status(f"{ids[1]}-1", "TASK_KILLED"))
    assert (node.scheduled.cpus, node.scheduled.mem, node.running_tasks) == (0.0, 0.0, 0)


async def test_launch_timeout_reconciles_then_marks_lost(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness)
    harness.log.clear()
    harness.clock.advance(29)
    await core.reconciler.check_launch_timeouts()
    assert harness.driver.of("reconcile") == []
    harness.clock.advance(2)
    await core.reconciler.check_launch_timeouts()
    assert harness.driver.of("reconcile") == [("reconcile", ((f"{task_id}-1", "a1"),))]
    harness.clock.advance(31)
    await core.reconciler.check_launch_timeouts()
    # Lost before any agent reported: requeued without spending an attempt.
    assert await harness.db_state(task_id) == ("QUEUED", 1, 0, None, 0)
    assert core.queue_depth == 1


async def test_launch_timeout_does_nothing_once_a_status_arrived(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness)
    await harness.updates(status(f"{task_id}-1", "TASK_STAGING"))
    harness.clock.advance(1000)
    await core.reconciler.check_launch_timeouts()
    assert harness.driver.of("reconcile") == []


async def test_reconciliation_explicit_with_resends_then_implicit(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await launch(harness, 3)
    await harness.updates(*(status(f"{i}-1", "TASK_RUNNING") for i in ids))
    harness.log.clear()
    round_ = core.reconciler.reconcile(retries=2)
    task = asyncio.get_running_loop().create_task(round_)
    await wait_for(lambda: len(harness.driver.of("reconcile")) == 1)
    first = harness.driver.of("reconcile")[0][1]
    assert sorted(first) == sorted((f"{i}-1", "a1") for i in ids)
    # Two tasks answer; the silent one is asked again.
    await harness.updates(status(f"{ids[0]}-1", "TASK_RUNNING", uuid=None))
    await harness.updates(status(f"{ids[1]}-1", "TASK_RUNNING", uuid=None))
    await task
    calls = [c[1] for c in harness.driver.of("reconcile")]
    assert calls[1] == ((f"{ids[2]}-1", "a1"),)
    assert calls[-1] == ()  # implicit last
    assert len(calls) == 4  # first round, two re-sends, implicit


async def test_subscribed_starts_reconciliation(harness: CoreHarness) -> None:
    from scale_scheduler.daemon.mesos.driver import Subscription

    core = await harness.start()
    ids = await launch(harness, 2)
    await harness.updates(*(status(f"{i}-1", "TASK_RUNNING") for i in ids))
    core.on_subscribed(Subscription("fw", 15.0, None, True))
    await wait_for(lambda: ("reconcile", ()) in harness.driver.calls, timeout=5)
    explicit = harness.driver.of("reconcile")[0][1]
    assert sorted(explicit) == sorted((f"{i}-1", "a1") for i in ids)


async def test_cancel_a_queued_task(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await harness.submit(3)
    assert await core.tracker.delete(ids[1]) is DeleteOutcome.CANCELED
    assert core.queue_depth == 2 == await harness.db_count("QUEUED")
    assert (await harness.db_state(ids[1]))[0] == "CANCELED"
    assert await core.tracker.delete(ids[1]) is DeleteOutcome.ALREADY_TERMINAL
    with pytest.raises(TaskNotFoundError):
        await core.tracker.delete(12345)
    await harness.offer_pass(make_offer("o1", "a1"))
    assert harness.driver.launched_ids() == [f"{ids[0]}-1", f"{ids[2]}-1"]


async def test_kill_a_launched_task_follows_mesos(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness, max_attempts=5)
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    assert await core.tracker.delete(task_id) is DeleteOutcome.KILL_REQUESTED
    assert ("kill", f"{task_id}-1", "a1") in harness.driver.calls
    assert (await harness.db_state(task_id))[0] == "RUNNING"  # until Mesos says otherwise
    assert (await harness.db_state(task_id))[4] == 1
    await harness.updates(status(f"{task_id}-1", "TASK_LOST"))
    assert (await harness.db_state(task_id))[0] == "KILLED"  # not retried
    assert core.queue_depth == 0


async def test_restart_reloads_queue_and_launched_tasks(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await harness.submit(5, cpus=1, mem=100)
    await harness.offer_pass(make_offer("o1", "a1", cpus=2, mem=1000))
    await harness.updates(status(f"{ids[0]}-1", "TASK_RUNNING"))
    await core.stop()

    again = SchedulerCore(
        harness.config, harness.state, harness.scheduler, harness.driver, harness.clock
    )
    harness.core = again
    await again.start()
    assert again.queue_depth == 3 == await harness.db_count("QUEUED")
    assert again.board.tasks[ids[0]].state is TaskState.RUNNING
    assert again.board.tasks[ids[1]].state is TaskState.LAUNCHING
    node = again.nodes.by_hostname["host-a1"]
    assert (node.scheduled.cpus, node.running_tasks) == (2.0, 2)
    # Queue order survives: the next launches are tasks 3 and 4.
    await harness.offer_pass(make_offer("o2", "a2", cpus=2, mem=1000))
    assert harness.driver.launched_ids()[-2:] == [f"{ids[2]}-1", f"{ids[3]}-1"]
    # New ids continue after the old ones.
    assert await harness.submit(1) == [ids[-1] + 1]


# -- stale updates of attempts that already ended -------------------------------------------------


async def test_a_resend_after_the_end_is_acknowledged_not_killed(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness)
    await harness.updates(status(f"{task_id}-1", "TASK_FINISHED", uuid=None))
    assert task_id not in core.board.tasks  # ended tasks leave memory
    harness.log.clear()
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING", uuid="cmVzZW50"))
    assert [entry[0] for entry in harness.log] == ["ack"]
    assert harness.log[0] == ("ack", "a1", f"{task_id}-1", "cmVzZW50")
    assert core.intake.stale_updates == 1
    assert (await harness.db_state(task_id))[0] == "FINISHED"


async def test_a_late_reconciliation_answer_after_the_end_draws_nothing(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness)
    await harness.updates(status(f"{task_id}-1", "TASK_KILLED"))
    harness.log.clear()
    await harness.updates(
        status(f"{task_id}-1", "TASK_RUNNING", uuid=None, reason="REASON_RECONCILIATION")
    )
    assert harness.log == []  # no uuid: no ack; ended for good: no kill
    assert core.intake.stale_updates == 1


async def test_an_update_reordered_after_the_end_in_one_burst_is_not_killed(
    harness: CoreHarness,
) -> None:
    await harness.start()
    (task_id,) = await launch(harness)
    await harness.updates(
        status(f"{task_id}-1", "TASK_FINISHED"), status(f"{task_id}-1", "TASK_RUNNING")
    )
    assert harness.driver.of("kill") == []
    assert len(harness.driver.of("ack")) == 2
    assert (await harness.db_state(task_id))[0] == "FINISHED"


async def test_a_failed_attempt_is_stale_until_the_task_moves_on_then_a_stray(
    harness: CoreHarness,
) -> None:
    await harness.start()
    (task_id,) = await launch(harness, max_attempts=2)
    await harness.updates(status(f"{task_id}-1", "TASK_FAILED"))  # retried: queued again
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))  # trails the failure
    assert harness.driver.of("kill") == []
    harness.clock.advance(1.0)  # its retry back-off
    harness.c.timers.release_due_retries()
    await harness.offer_pass(make_offer("o2", "a2"))  # now on attempt 2
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    assert harness.driver.of("kill") == [("kill", f"{task_id}-1", "a1")]
    assert (await harness.db_state(task_id))[:2] == ("LAUNCHING", 2)


async def test_an_attempt_that_was_lost_may_come_back_and_is_killed(harness: CoreHarness) -> None:
    """LOST (and UNKNOWN) are not final: the agent may come back with the task running."""
    await harness.start()
    (task_id,) = await launch(harness)
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    await harness.updates(status(f"{task_id}-1", "TASK_LOST"))  # the cluster's: retried
    assert (await harness.db_state(task_id))[:3] == ("QUEUED", 1, 0)
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    assert harness.driver.of("kill") == [("kill", f"{task_id}-1", "a1")]


async def test_a_launch_timed_out_as_lost_that_turns_up_running_is_killed(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness)
    harness.clock.advance(31)
    await core.reconciler.check_launch_timeouts()
    harness.clock.advance(31)
    await core.reconciler.check_launch_timeouts()  # lost by the scheduler's own verdict: requeued
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    assert harness.driver.of("kill") == [("kill", f"{task_id}-1", "a1")]


@pytest.mark.parametrize(
    "state",
    [
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    ],
)
async def test_a_terminal_update_never_draws_a_kill(harness: CoreHarness, state: str) -> None:
    core = await harness.start()
    (task_id,) = await launch(harness, max_attempts=3)
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    assert await core.tracker.delete(task_id) is DeleteOutcome.KILL_REQUESTED
    harness.log.clear()
    await harness.updates(
        status("999-1", state),  # never ours
        status("not-ours", state),
        status(f"{task_id}-7", state),  # an attempt that never was
        status("998-1", "TASK_RUNNING"),  # unknown, running, then ended in the same burst
        status("998-1", state),
        status(f"{task_id}-1", "TASK_RUNNING", uuid=None),  # asked to die, then ended
        status(f"{task_id}-1", state),
    )
    assert harness.driver.of("kill") == []
    assert task_id not in core.board.tasks


def test_ended_attempts_are_bounded_and_forget_the_oldest_first() -> None:
    ended = EndedAttempts(capacity=3)
    for task_id in (1, 2, 3, 4):
        ended.add(task_id, 1)
    ended.add(4, 1)  # already there: nothing moves
    assert len(ended) == 3
    assert [ended.has(i, 1) for i in (1, 2, 3, 4)] == [False, True, True, True]
    assert not ended.has(2, 2)  # another attempt of a remembered task
    ended.add(5, 1 << 40)  # not an attempt of ours: never remembered
    assert not ended.has(5, 1 << 40)
    assert len(ended) == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12-3", (12, 3)),
        ("12-0", (12, 0)),
        ("12", None),
        ("a-1", None),
        ("12-", None),
        ("\u00b2-1", None),  # '²'.isdigit() is true, int('²') raises
        ("1-\u0663", None),  # Arabic-Indic digit three
        ("other-framework-task", None),
    ],
)
def test_parse_mesos_task_id(value: str, expected: tuple[int, int] | None) -> None:
    assert parse_mesos_task_id(value) == expected
