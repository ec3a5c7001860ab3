"""Regression tests, at the unit level, for defects the reliability scenarios exposed."""

from __future__ import annotations

from corekit import CoreHarness, make_offer, status

from scale_scheduler.state.tasks import TaskState


async def launched_and_reconciled(h: CoreHarness) -> int:
    """A task launched, silent past ``launch_timeout`` and reconciled: the next check loses it."""
    core = await h.start()
    (task_id,) = await h.submit(1)
    await h.offer_pass(make_offer("o1", "a1"))
    h.clock.advance(31)
    await core.tracker.check_launch_timeouts()
    assert h.driver.of("reconcile") == [("reconcile", ((f"{task_id}-1", "a1"),))]
    h.clock.advance(31)
    return task_id


async def test_launch_timeout_yields_to_an_update_already_received(
    core_harness: CoreHarness,
) -> None:
    # The answer came in just before the timeout check ran, but was not yet handled: the task
    # is not lost, is not requeued (a second launch) and is not killed.
    task_id = await launched_and_reconciled(core_harness)
    core = core_harness.c
    core.on_update(status(f"{task_id}-1", "TASK_STARTING"))
    await core.tracker.check_launch_timeouts()
    await core_harness.updates()
    assert (await core_harness.db_state(task_id))[:2] == ("STARTING", 1)
    assert core.tracker.tasks[task_id].state is TaskState.STARTING
    assert core.queue_depth == 0 == await core_harness.db_count("QUEUED")
    assert core_harness.driver.of("kill") == []


async def test_launch_timeout_still_marks_a_silent_launch_lost(core_harness: CoreHarness) -> None:
    task_id = await launched_and_reconciled(core_harness)
    await core_harness.c.tracker.check_launch_timeouts()
    assert (await core_harness.db_state(task_id))[:2] == ("QUEUED", 1)
    assert core_harness.c.queue_depth == 1
