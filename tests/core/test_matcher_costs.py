"""What the matcher pays per task: a plain shape pays nothing for the features it does not use,
and a constraint that reads only the agent is evaluated once per agent and pass, however many
tasks or groups carry it (B3's match in bench/RESULTS.md).

Counted through the public inputs: a mapping of hosts to avoid that counts its lookups, and a
``LIKE`` constraint whose compiled expression counts its matches.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping

from corekit import make_offer

from scale_scheduler.daemon.mesos.mesos_types import Offer
from scale_scheduler.daemon.scheduling.matcher import MatchResult, MatchSettings, WaitReason, match
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import Shape, ShapeInterner, TaskState
from scale_scheduler.state.placement_constraints import Constraint, Operator
from scale_scheduler.state.tasks import Task

SETTINGS = MatchSettings(refuse_seconds=5.0, idle_refuse_seconds=120.0)
AGENTS = 10


class CountedAvoid(Mapping[int, Collection[str]]):
    """Hosts to avoid per task, counting every lookup of a task."""

    def __init__(self, hosts: dict[int, Collection[str]]) -> None:
        self._hosts = hosts
        self.lookups = 0

    def __getitem__(self, task_id: int) -> Collection[str]:
        self.lookups += 1
        return self._hosts[task_id]

    def __contains__(self, task_id: object) -> bool:
        self.lookups += 1
        return task_id in self._hosts

    def __iter__(self) -> Iterator[int]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)


class CountedPattern:
    """A compiled expression that counts its matches."""

    def __init__(self, expression: str) -> None:
        self._pattern = re.compile(expression)
        self.matches = 0

    def fullmatch(self, value: str) -> re.Match[str] | None:
        self.matches += 1
        return self._pattern.fullmatch(value)


def offers(cpus: float = 32) -> list[Offer]:
    return [
        make_offer(f"o{i}", f"a{i}", cpus=cpus, mem=32 * 128, hostname=f"h{i}",
                   attributes={"rack": f"r{i % 3}"})
        for i in range(AGENTS)
    ]  # fmt: skip


def queue(shapes: list[Shape], tasks: int, run: int = 1) -> QueueIndex:
    """``tasks`` tasks, ``run`` ids in a row of each shape in turn, at one priority."""
    records: dict[int, Task] = {}
    index = QueueIndex(records)
    for task_id in range(1, tasks + 1):
        shape = shapes[((task_id - 1) // run) % len(shapes)]
        records[task_id] = Task(task_id, 100, shape, b"{}", TaskState.QUEUED, 1)
        index.add(records[task_id])
    return index


def placed(result: MatchResult) -> dict[str, list[int]]:
    return {launch.agent_id: [p.task_id for p in launch.placements] for launch in result.launches}


def test_a_plain_group_looks_up_hosts_to_avoid_once_per_run_not_per_task() -> None:
    """Another task's failed hosts cost the plain group's tasks nothing: one lookup per run of
    equal tasks on one agent (the first of the run may be one to move), not one per task."""
    interner = ShapeInterner()
    plain = interner.get(1.0, 128.0)
    index = queue([plain], AGENTS * 32)
    avoid = CountedAvoid({10_000: {"h0"}})  # a task not queued
    with_avoid = match(offers(), index, scheduler_paused=False, blocked_hosts={},
                       settings=SETTINGS, avoid=avoid)  # fmt: skip
    without = match(offers(), index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS)
    assert with_avoid.placed == AGENTS * 32
    assert placed(with_avoid) == placed(without)
    assert avoid.lookups <= AGENTS


def test_merged_plain_groups_look_up_hosts_to_avoid_once_per_run() -> None:
    interner = ShapeInterner()
    shapes = [interner.get(1.0, 128.0), interner.get(1.0, 64.0)]
    index = queue(shapes, AGENTS * 32, run=16)  # 20 runs of 16 ids, the groups in turn
    avoid = CountedAvoid({10_000: {"h0"}})
    result = match(offers(), index, scheduler_paused=False, blocked_hosts={},
                   settings=SETTINGS, avoid=avoid)  # fmt: skip
    assert result.placed == AGENTS * 32
    assert avoid.lookups <= 2 * AGENTS + 20


def test_a_task_to_keep_off_a_host_still_ends_a_run_and_moves() -> None:
    """The counting above does not skip the preference: task 5 failed on h0 and goes to h1."""
    interner = ShapeInterner()
    index = queue([interner.get(1.0, 128.0)], 40)
    avoid = CountedAvoid({5: {"h0"}})
    result = match(offers(), index, scheduler_paused=False, blocked_hosts={},
                   settings=SETTINGS, avoid=avoid)  # fmt: skip
    assert placed(result) == {"a0": [1, 2, 3, 4, *range(6, 34)], "a1": [5, *range(34, 41)]}


def test_a_static_constraint_is_evaluated_once_per_agent_and_pass() -> None:
    """A ``LIKE`` shared by many groups' shapes, on tasks interleaved with plain ones: its
    expression runs once per offering agent, not per task, run or group, and the groups that
    find no room all wait on the resource that is short."""
    pattern = CountedPattern("r[01]")
    like = Constraint("rack", Operator.LIKE, "r[01]", pattern=pattern)  # type: ignore[arg-type]
    interner = ShapeInterner()
    grouped = [interner.get(1.0, 128.0, constraints=(like,), group=f"g{g}") for g in range(20)]
    plain = interner.get(1.0, 128.0)
    index = queue([plain, *grouped], 2_000, run=3)
    result = match(offers(), index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS)
    racks = {f"a{i}": f"r{i % 3}" for i in range(AGENTS)}
    per_agent = placed(result)
    for agent, tasks in per_agent.items():
        if racks[agent] != "r2":
            assert len(tasks) == 32  # filled: the grouped tasks outnumber the room
        else:
            assert all(((task - 1) // 3) % 21 == 0 for task in tasks)  # plain tasks only
    assert {w.reason for w in result.waiting} == {WaitReason.CPUS}
    assert {w.shape.group for w in result.waiting} == {f"g{g}" for g in range(20)}
    assert pattern.matches <= AGENTS
