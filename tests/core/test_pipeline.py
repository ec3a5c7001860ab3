"""The offer pipeline with the fake driver: call order (persist before accept, revert on a sure
failure, reconcile on an unknown outcome), declines and filters, rescinds, pause, SUPPRESS and
rate-limited REVIVE, TaskInfo."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from corekit import CoreHarness, make_offer, new_task, status, wait_for

from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    DriverError,
    Launch,
    NotConnectedError,
)
from scale_scheduler.daemon.scheduling import offer_pipeline
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.state.changes import Change, LaunchIntents
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.nodes import FlagChange

INTENT = "LaunchIntents"
REVERT = "LaunchesReverted"


def commits_with(log: list[tuple[Any, ...]], kind: str) -> list[int]:
    return [i for i, entry in enumerate(log) if entry[0] == "commit" and kind in entry[1]]


def has_intents(changes: Sequence[Change]) -> bool:
    return any(isinstance(change, LaunchIntents) for change in changes)


async def test_intent_is_committed_before_accept(harness: CoreHarness) -> None:
    await harness.start()
    ids = await harness.submit(3)
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"), make_offer("o2", "a2", cpus=1))
    (intent,) = commits_with(harness.log, INTENT)
    accepts = [i for i, entry in enumerate(harness.log) if entry[0] == "accept"]
    assert len(accepts) == 1  # one ACCEPT for the agent that got every task (first fit)
    assert intent < accepts[0]
    launch, refuse = harness.log[accepts[0]][1:]
    assert list(launch.offer_ids) == ["o1"]
    assert [t.task_id.value for t in launch.tasks] == [f"{i}-1" for i in ids]
    assert refuse == 5.0
    assert ("decline", ("o2",), 120.0) in harness.log  # nothing left fits a2


async def test_failed_accept_reverts_tasks_to_the_queue(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await harness.submit(4, cpus=2)
    harness.driver.fail_agents.add("a2")
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1", cpus=4), make_offer("o2", "a2", cpus=4))
    (intent,) = commits_with(harness.log, INTENT)
    (revert,) = commits_with(harness.log, REVERT)
    accept_positions = [i for i, e in enumerate(harness.log) if e[0] == "accept"]
    assert intent < min(accept_positions)
    assert max(accept_positions) < revert
    assert core.queue_depth == 2 == await harness.db_count("QUEUED")
    assert [await harness.db_state(i) for i in ids[2:]] == [("QUEUED", 1, 0, None, 0)] * 2
    node = core.nodes.by_hostname["host-a2"]
    assert node.scheduled.cpus == 0.0
    # The reverted tasks launch again later with a fresh Mesos id.
    harness.driver.fail_agents.clear()
    await harness.offer_pass(make_offer("o3", "a3", cpus=4))
    assert harness.driver.launched_ids()[-2:] == [f"{ids[2]}-2", f"{ids[3]}-2"]


async def test_matcher_error_declines_without_filter(
    harness: CoreHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = await harness.start()
    await harness.submit(2)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("matcher bug")

    monkeypatch.setattr(offer_pipeline, "match", broken)
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"), make_offer("o2", "a2"))
    assert harness.driver.of("decline") == [("decline", ("o1", "o2"), None)]
    assert harness.driver.of("accept") == []
    assert core.queue_depth == 2 == await harness.db_count("QUEUED")


async def test_failed_intent_commit_declines_and_keeps_tasks_queued(harness: CoreHarness) -> None:
    core = await harness.start()
    await harness.submit(2)

    def failing(changes: Sequence[Change]) -> None:
        if has_intents(changes):
            raise OSError("disk full")

    harness.state.before_commit = failing
    await harness.offer_pass(make_offer("o1", "a1"))
    assert harness.driver.of("accept") == []
    assert harness.driver.of("decline") == [("decline", ("o1",), None)]
    assert core.queue_depth == 2 == await harness.db_count("QUEUED")
    assert all(not t.busy for t in core.board.tasks.values())


async def test_one_decline_call_carries_many_offers(harness: CoreHarness) -> None:
    await harness.start()
    await harness.offer_pass(*(make_offer(f"o{i}", f"a{i}") for i in range(50)))
    (decline,) = harness.driver.of("decline")
    assert len(decline[1]) == 50
    assert decline[2] == 120.0  # nothing queued could use them: the long filter


async def test_rescinded_offer_is_never_used(harness: CoreHarness) -> None:
    core = await harness.start()
    await harness.submit(1)
    core.pipeline.add_offers([make_offer("o1", "a1")])
    core.on_rescind("o1")
    await harness.offer_pass(make_offer("o2", "a2"))
    (accept,) = harness.driver.of("accept")
    assert list(accept[1].offer_ids) == ["o2"]
    assert "o1" not in str(harness.driver.calls)


async def test_offer_rescinded_while_intent_commits_is_not_accepted(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await harness.submit(1)

    def rescind(changes: Sequence[Change]) -> None:
        if has_intents(changes):
            core.on_rescind("o1")

    harness.state.before_commit = rescind
    await harness.offer_pass(make_offer("o1", "a1"))
    assert harness.driver.of("accept") == []
    assert core.queue_depth == 1
    assert (await harness.db_state(task_id))[0] == "QUEUED"


async def test_global_pause_declines_suppresses_and_unpause_revives(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    await harness.submit(2)
    await core.set_paused(True)
    await wait_for(lambda: bool(harness.driver.of("suppress")))
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"))
    assert harness.driver.of("accept") == []
    assert harness.driver.of("decline") == [("decline", ("o1",), 5.0)]
    task = next(iter(core.board.tasks.values()))
    assert core.board.waiting_reason(task, True) == "the scheduler is paused"
    await core.set_paused(False)
    await wait_for(lambda: bool(harness.driver.of("revive")))
    await harness.offer_pass(make_offer("o2", "a1"))
    assert len(harness.driver.launched_ids()) == 2


async def test_suppress_when_queue_empties(harness: CoreHarness) -> None:
    core = await harness.start()
    (task_id,) = await harness.submit(1)
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"))
    await wait_for(lambda: bool(harness.driver.of("suppress")))
    assert core.pipeline.suppressed
    assert harness.driver.kinds().index("accept") < harness.driver.kinds().index("suppress")
    await harness.updates(status(f"{task_id}-1", "TASK_FINISHED"))


async def test_revive_is_rate_limited_but_not_lost(harness: CoreHarness) -> None:
    core = await harness.start()
    await harness.submit(1)
    await wait_for(lambda: len(harness.driver.of("revive")) == 1)
    first = harness.clock.now
    await harness.submit(1)
    await harness.submit(1)
    await asyncio.sleep(0.05)  # nothing may happen: no second revive within revive_interval
    assert len(harness.driver.of("revive")) == 1  # within revive_interval (0.2 s)
    harness.clock.now = first + 0.2
    await wait_for(lambda: len(harness.driver.of("revive")) == 2, timeout=2)
    assert core.pipeline.suppressed is False


async def test_node_pause_stops_launches_there_only_and_survives_global_pause(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    await harness.submit(2)
    await harness.offer_pass(make_offer("o0", "a1", cpus=0.1), make_offer("o00", "a2", cpus=0.1))
    n1 = core.nodes.by_hostname["host-a1"]
    await core.set_node_flags(
        n1.id, FlagChange(is_paused=True, set_reason=True, pause_reason="disk")
    )
    await core.set_paused(True)
    await core.set_paused(False)
    assert n1.is_paused
    assert n1.pause_reason == "disk"
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"), make_offer("o2", "a2", cpus=1))
    (accept,) = harness.driver.of("accept")
    assert list(accept[1].offer_ids) == ["o2"]
    assert ("decline", ("o1",), 5.0) in harness.driver.calls
    await core.set_node_flags(n1.id, FlagChange(is_paused=False))
    assert n1.pause_reason is None  # unpausing clears the reason
    await wait_for(lambda: bool(harness.driver.of("revive")))
    await harness.offer_pass(make_offer("o3", "a1"))
    assert len(harness.driver.launched_ids()) == 2


async def test_task_info_carries_command_env_ports_container_labels(harness: CoreHarness) -> None:
    core = await harness.start()
    item = new_task("web", cpus=0.5, mem=64, ports=2, env={"A": "1"}, command="serve")
    await core.tracker.submit([item])
    await harness.offer_pass(make_offer("o1", "a1", ports=((31000, 31010),), role="r1"))
    (accept,) = harness.driver.of("accept")
    (info,) = accept[1].tasks
    assert info.name == "web"
    assert info.agent_id.value == "a1"
    assert info.command is not None
    assert info.command.value == "serve"
    assert info.command.environment is not None
    env = {v.name: v.value for v in info.command.environment.variables}
    assert env == {"A": "1", "PORT0": "31000", "PORT1": "31001", "PORTS": "31000,31001"}
    names = sorted(r.name for r in info.resources)
    assert names == ["cpus", "mem", "ports"]
    assert all(
        r.allocation_info is not None and r.allocation_info.role == "r1" for r in info.resources
    )


async def test_delete_while_the_launch_is_in_flight_kills_after_accept(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    (task_id,) = await harness.submit(1)
    deletes: list[asyncio.Task[Any]] = []

    def racing(changes: Sequence[Change]) -> None:
        if has_intents(changes):
            deletes.append(asyncio.get_running_loop().create_task(core.tracker.delete(task_id)))

    harness.state.before_commit = racing
    await harness.offer_pass(make_offer("o1", "a1"))
    await deletes[0]
    kinds = harness.driver.kinds()
    assert kinds.index("accept") < kinds.index("kill")
    assert ("kill", f"{task_id}-1", "a1") in harness.driver.calls
    await harness.updates(status(f"{task_id}-1", "TASK_KILLED"))
    assert (await harness.db_state(task_id))[0] == "KILLED"


async def test_a_bug_after_matching_still_answers_every_offer(
    harness: CoreHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = await harness.start()
    await harness.submit(1)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug in building a TaskInfo")

    monkeypatch.setattr(offer_pipeline, "build_task_info", broken)
    await harness.offer_pass(make_offer("o1", "a1"), make_offer("o2", "a2"))
    declined = {oid for call in harness.driver.of("decline") for oid in call[1]}
    assert declined == {"o1", "o2"}
    assert harness.driver.of("accept") == []
    # The task whose launch could not be built is queued again, not stuck as launching.
    assert core.queue_depth == 1 == await harness.db_count("QUEUED")
    assert all(not t.busy for t in core.board.tasks.values())


async def test_tasks_queued_during_a_pass_are_not_hidden_by_a_long_filter(
    harness: CoreHarness,
) -> None:
    """A pass matched an empty queue; tasks arrive (and REVIVE) while it commits: its declines
    must not filter those offers for idle_refuse_seconds, or the new tasks wait that long."""
    await harness.start()
    armed = [True]
    submitted: list[int] = []

    async def submit_during_the_pass(changes: Sequence[Change]) -> None:
        if armed[0]:
            armed[0] = False
            # Queued (and committed) while the pass's own write is in flight.
            submitted.extend(await harness.submit(2))

    harness.state.before_commit = submit_during_the_pass
    await harness.offer_pass(make_offer("o1", "a1"))  # first sighting of a1: a node commit
    assert len(submitted) == 2
    (decline,) = harness.driver.of("decline")
    assert decline[1:] == (("o1",), 0.0)

    # an undisturbed pass over the same empty-looking situation keeps the long filter
    harness.state.before_commit = None
    await harness.offer_pass(make_offer("o2", "a2"), make_offer("o3", "a3", cpus=0.1))
    assert ("decline", ("o3",), 120.0) in harness.log


def fail_next_accept(harness: CoreHarness, error: Exception) -> None:
    """The fake driver's next ACCEPT is recorded, then fails with ``error``; later ones pass."""
    record = harness.driver.accept
    pending = [error]

    async def accept(launch: Launch, refuse_seconds: float | None = None) -> None:
        await record(launch, refuse_seconds)
        if pending:
            raise pending.pop()

    harness.driver.accept = accept  # type: ignore[method-assign]


@pytest.mark.parametrize(
    "error",
    [
        NotConnectedError("ACCEPT not sent: no live subscription"),
        DriverError("ACCEPT not sent: connection refused"),
        DriverError("ACCEPT answered HTTP 400"),
    ],
)
async def test_an_accept_that_surely_failed_is_reverted(
    harness: CoreHarness, error: Exception
) -> None:
    core = await harness.start()
    (task_id,) = await harness.submit(1)
    fail_next_accept(harness, error)
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"))
    assert len(commits_with(harness.log, REVERT)) == 1
    assert harness.driver.of("reconcile") == []
    assert await harness.db_state(task_id) == ("QUEUED", 1, 0, None, 0)
    assert core.queue_depth == 1
    assert core.pipeline.last_pass is not None
    assert (core.pipeline.last_pass.reverted, core.pipeline.last_pass.unconfirmed) == (1, 0)


async def unconfirmed_launch(harness: CoreHarness, **task: Any) -> tuple[SchedulerCore, list[int]]:
    """Two tasks whose ACCEPT fails with an unknown outcome."""
    core = await harness.start()
    ids = await harness.submit(2, **task)
    fail_next_accept(harness, CallOutcomeUnknownError("ACCEPT timed out (may have applied)"))
    harness.log.clear()
    await harness.offer_pass(make_offer("o1", "a1"))
    return core, ids


async def test_an_accept_with_an_unknown_outcome_stays_launching_and_is_reconciled(
    harness: CoreHarness,
) -> None:
    core, ids = await unconfirmed_launch(harness)
    assert commits_with(harness.log, REVERT) == []
    assert [await harness.db_state(i) for i in ids] == [("LAUNCHING", 1, 0, "a1", 0)] * 2
    assert all(core.board.tasks[i].state is TaskState.LAUNCHING for i in ids)
    assert all(not core.board.tasks[i].busy for i in ids)
    assert core.queue_depth == 0
    # Explicit reconciliation of exactly those launches, right after the ACCEPT.
    kinds = harness.driver.kinds()
    assert kinds.index("accept") < kinds.index("reconcile")
    assert harness.driver.of("reconcile") == [("reconcile", tuple((f"{i}-1", "a1") for i in ids))]
    assert core.pipeline.last_pass is not None
    assert (core.pipeline.last_pass.reverted, core.pipeline.last_pass.unconfirmed) == (0, 2)


async def test_unknown_accept_then_the_master_says_lost_relaunches_under_a_new_id(
    harness: CoreHarness,
) -> None:
    core, ids = await unconfirmed_launch(harness)
    answer = [
        status(
            f"{i}-1",
            "TASK_LOST",
            uuid=None,
            reason="REASON_RECONCILIATION",
            message="Reconciliation: Task is unknown",
        )
        for i in ids
    ]
    await harness.updates(*answer)
    assert [await harness.db_state(i) for i in ids] == [("QUEUED", 1, 0, None, 0)] * 2
    assert core.queue_depth == 2
    await harness.offer_pass(make_offer("o2", "a2"))
    assert harness.driver.launched_ids()[-2:] == [f"{i}-2" for i in ids]
    assert harness.driver.of("kill") == []


async def test_unknown_accept_then_the_master_says_running_follows_it(
    harness: CoreHarness,
) -> None:
    core, ids = await unconfirmed_launch(harness)
    await harness.updates(*(status(f"{i}-1", "TASK_RUNNING", uuid=None) for i in ids))
    assert [(await harness.db_state(i))[0] for i in ids] == ["RUNNING", "RUNNING"]
    assert core.queue_depth == 0
    await harness.offer_pass(make_offer("o2", "a2"))
    assert harness.driver.launched_ids() == [f"{i}-1" for i in ids]  # never launched again


async def test_unknown_accept_and_a_silent_master_falls_back_on_the_launch_timeout(
    harness: CoreHarness,
) -> None:
    core, ids = await unconfirmed_launch(harness)
    harness.clock.advance(31)
    await core.reconciler.check_launch_timeouts()
    assert len(harness.driver.of("reconcile")) == 2
    harness.clock.advance(31)
    await core.reconciler.check_launch_timeouts()
    assert [await harness.db_state(i) for i in ids] == [("QUEUED", 1, 0, None, 0)] * 2
