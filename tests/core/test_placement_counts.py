"""The group counts scoped constraints read: kept as tasks launch and end, restored on restart
from the live tasks, and the task group and constraints stored by both state backends (rows of
the old ``{"attr": "value"}`` form still load)."""

from __future__ import annotations

import msgspec
from corekit import CoreHarness, make_offer, status

from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.state.domain import ShapeInterner, TaskState
from scale_scheduler.state.placement_constraints import AgentValues, Operator
from scale_scheduler.state.placement_counts import PlacementCounts
from scale_scheduler.state.store import Statement

UNIQUE = [["hostname", "UNIQUE"]]


def test_counts_follow_launches_ends_and_learned_attributes() -> None:
    counts = PlacementCounts()
    counts.launched("h1", "etl")  # attributes not known yet (a restart): hostname only
    assert counts.group_counts("etl") == {"hostname": {"h1": 1}}
    counts.learn(AgentValues("h1", {"rack": "r1"}))
    counts.learn(AgentValues("h2", {"rack": "r2"}))
    counts.launched("h2", "etl")
    assert counts.group_counts("etl") == {
        "hostname": {"h1": 1, "h2": 1},
        "rack": {"r1": 1, "r2": 1},
    }
    assert (counts.known_values("rack"), counts.known_values("hostname")) == (2, 2)
    counts.learn(AgentValues("h1", {"rack": "r9"}))  # registered again with new attributes
    assert counts.group_counts("etl")["rack"] == {"r9": 1, "r2": 1}
    counts.launched("h2", "etl", -1)
    counts.launched("h2", "etl", -1)  # never counted twice down
    counts.forget("h1")
    assert counts.group_counts("etl") == {"hostname": {"h1": 1}}
    assert counts.known_values("rack") == 1
    counts.launched("h1", "etl", -1)
    assert counts.group_counts("etl") == {}


async def test_the_tracker_keeps_the_counts_and_a_restart_restores_them(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    ids = await harness.submit(3, cpus=1, mem=100, constraints=UNIQUE, group="etl")
    offers = [make_offer(f"o{i}", f"a{i}", cpus=4, attributes={"rack": "r1"}) for i in (1, 2)]
    await harness.offer_pass(*offers)
    launched = harness.driver.launched_ids()
    assert len(launched) == 2  # UNIQUE hostname over two agents, one offer pass
    placement = core.nodes.placement
    assert placement.group_counts("etl") == {
        "hostname": {"host-a1": 1, "host-a2": 1},
        "rack": {"r1": 2},
    }
    await harness.updates(status(launched[0], "TASK_RUNNING", agent="a1"))
    await core.stop()

    again = SchedulerCore(
        harness.config, harness.state, harness.scheduler, harness.driver, harness.clock
    )
    harness.core = again
    await again.start()
    # Restored from the live tasks: hostnames at once, attributes when the agents offer again.
    assert again.nodes.placement.group_counts("etl") == {"hostname": {"host-a1": 1, "host-a2": 1}}
    queued = again.board.tasks[ids[2]]
    assert queued.shape.group == "etl"
    assert [c.operator for c in queued.shape.constraints] == [Operator.UNIQUE]
    await harness.offer_pass(make_offer("o3", "a1", cpus=4, attributes={"rack": "r1"}))
    assert len(harness.driver.launched_ids()) == 2  # h1 runs one of the group already
    assert again.nodes.placement.group_counts("etl")["rack"] == {"r1": 1}
    await harness.updates(status(launched[0], "TASK_FINISHED", agent="a1"))
    assert again.nodes.placement.group_counts("etl")["hostname"] == {"host-a2": 1}
    await harness.offer_pass(make_offer("o4", "a1", cpus=4, attributes={"rack": "r1"}))
    assert len(harness.driver.launched_ids()) == 3
    view = await harness.state.task(ids[2])
    assert view is not None
    assert (view.group, view.constraints) == ("etl", UNIQUE)


async def test_rows_of_the_dict_form_still_load(sqlite_harness: CoreHarness) -> None:
    core = await sqlite_harness.start()
    (task_id,) = await sqlite_harness.submit(1, constraints=[["rack", "IS", "r1"]])
    await core.stop()
    store = sqlite_harness.store
    stored = await store.fetchone("SELECT constraints FROM tasks WHERE id = ?", (task_id,))
    assert stored is not None
    assert msgspec.json.decode(stored[0]) == [["rack", "IS", "r1"]]
    # A row written before the list form: the shorthand, no group column value.
    await store.write(
        [Statement("UPDATE tasks SET constraints = ? WHERE id = ?", [('{"rack": "r2"}', task_id)])]
    )
    tasks = [
        task async for batch in sqlite_harness.state.live_tasks(ShapeInterner()) for task in batch
    ]
    (task,) = tasks
    assert task.state is TaskState.QUEUED
    assert [(c.field, c.operator, c.value) for c in task.shape.constraints] == [
        ("rack", Operator.IS, "r2")
    ]
    view = await sqlite_harness.state.task(task_id)
    assert view is not None
    assert view.constraints == [["rack", "IS", "r2"]]
