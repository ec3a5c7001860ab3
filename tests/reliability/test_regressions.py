"""Regression tests, at the unit level, for defects the reliability scenarios exposed (the core on
each state backend: SQLite and PostgreSQL)."""

from __future__ import annotations

import structlog
from corekit import CoreHarness, make_offer, status

from scale_scheduler.daemon.mesos.mesos_types import Resource, Scalar, Set
from scale_scheduler.state.domain import TaskState


async def launched_and_reconciled(h: CoreHarness) -> int:
    """A task launched, silent past ``launch_timeout`` and reconciled: the next check loses it."""
    core = await h.start()
    (task_id,) = await h.submit(1)
    await h.offer_pass(make_offer("o1", "a1"))
    h.clock.advance(31)
    await core.reconciler.check_launch_timeouts()
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
    await core.reconciler.check_launch_timeouts()
    await core_harness.updates()
    assert (await core_harness.db_state(task_id))[:2] == ("STARTING", 1)
    assert core.board.tasks[task_id].state is TaskState.STARTING
    assert core.queue_depth == 0 == await core_harness.db_count("QUEUED")
    assert core_harness.driver.of("kill") == []


async def test_launch_timeout_still_marks_a_silent_launch_lost(core_harness: CoreHarness) -> None:
    task_id = await launched_and_reconciled(core_harness)
    await core_harness.c.reconciler.check_launch_timeouts()
    assert (await core_harness.db_state(task_id))[:2] == ("QUEUED", 1)
    assert core_harness.c.queue_depth == 1


async def test_unknown_resource_kinds_are_logged_once_and_left_out(
    core_harness: CoreHarness,
) -> None:
    core = await core_harness.start()
    await core_harness.submit(2)
    odd = [
        Resource(name="fpgas", type="SCALAR", scalar=Scalar(2.0)),
        Resource(name="licenses", type="SET", set=Set(["a", "b"])),
    ]
    first = make_offer("o1", "a1", cpus=1, extra=tuple(odd))
    second = make_offer("o2", "a2", cpus=1, extra=tuple(odd))
    with structlog.testing.capture_logs() as logs:
        await core_harness.offer_pass(first)
        await core_harness.offer_pass(second)
    ignored = [e for e in logs if e["event"] == "offer_resources_ignored"]
    assert ignored == [
        {
            "event": "offer_resources_ignored",
            "log_level": "warning",
            "names": ["fpgas", "licenses"],
            "offer_id": "o1",
            "agent_id": "a1",
            "hostname": "host-a1",
        }
    ]
    accepts = core_harness.driver.of("accept")
    assert [call[1].offer_ids for call in accepts] == [("o1",), ("o2",)]
    used = {r.name for call in accepts for task in call[1].tasks for r in task.resources}
    assert used == {"cpus", "mem"}
    assert core.queue_depth == 0
