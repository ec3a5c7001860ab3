"""The pure matcher: table-driven placement cases, waiting reasons, declines, and its cost."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from corekit import make_offer

from scale_scheduler.daemon.mesos.mesos_types import AllocationInfo, Offer, Resource, Scalar, Value
from scale_scheduler.daemon.scheduling.matcher import (
    DeclineReason,
    GroupView,
    HostBlock,
    MatchResult,
    MatchSettings,
    WaitReason,
    match,
)
from scale_scheduler.daemon.scheduling.offer_bins import Bin
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import ShapeInterner, TaskState, constraints_from
from scale_scheduler.state.tasks import Task

SETTINGS = MatchSettings(refuse_seconds=5.0, idle_refuse_seconds=120.0)


@dataclass
class Q:
    """A queue for the table: (task id, shape kwargs, priority)."""

    specs: list[tuple[int, dict[str, object], int]] = field(default_factory=list)

    def build(self) -> tuple[QueueIndex, dict[int, Task]]:
        tasks: dict[int, Task] = {}
        index = QueueIndex(tasks)
        interner = ShapeInterner()
        for task_id, shape, priority in self.specs:
            kwargs = dict(shape)
            constraints = constraints_from(kwargs.pop("constraints", None))  # type: ignore[arg-type]
            task = Task(
                id=task_id,
                priority=priority,
                shape=interner.get(constraints=constraints, **kwargs),  # type: ignore[arg-type]
                spec=b"{}",
                state=TaskState.QUEUED,
                max_attempts=1,
            )
            tasks[task_id] = task
            index.add(task)
        return index, tasks


def run(
    offers: Sequence[Offer],
    queue: Q,
    *,
    paused: bool = False,
    blocked: dict[str, HostBlock] | None = None,
) -> MatchResult:
    index, _tasks = queue.build()
    return match(
        offers, index, scheduler_paused=paused, blocked_hosts=blocked or {}, settings=SETTINGS
    )


def placed(result: MatchResult) -> dict[str, list[int]]:
    return {launch.agent_id: [p.task_id for p in launch.placements] for launch in result.launches}


def small(cpus: float = 1.0, mem: float = 128.0, **extra: object) -> dict[str, object]:
    return {"cpus": cpus, "mem": mem, **extra}


CASES = [
    pytest.param(
        [make_offer("o1", "a1", cpus=2)],
        Q([(1, small(), 100), (2, small(), 100), (3, small(), 100)]),
        {"a1": [1, 2]},
        id="fills-an-agent-in-submission-order",
    ),
    pytest.param(
        [make_offer("o1", "a1", cpus=1)],
        Q([(1, small(), 100), (2, small(), 5)]),
        {"a1": [2]},
        id="lower-priority-number-first",
    ),
    pytest.param(
        [make_offer("o1", "a1", cpus=8, mem=1024)],
        Q([(1, small(cpus=64), 1), (2, small(cpus=64), 1), (3, small(), 100), (4, small(), 100)]),
        {"a1": [3, 4]},
        id="head-of-line-unfit-group-skipped",
    ),
    pytest.param(
        [make_offer("o1", "a1", cpus=2)],
        Q([(1, small(mem=64), 100), (2, small(mem=256), 100), (3, small(mem=64), 100)]),
        {"a1": [1, 2]},
        id="submission-order-across-shapes-within-a-priority",
    ),
    pytest.param(
        [make_offer("o1", "a1", cpus=1), make_offer("o2", "a2", cpus=4)],
        Q([(1, small(cpus=2), 100), (2, small(), 100)]),
        {"a2": [1], "a1": [2]},
        id="first-fit-over-agents",
    ),
    pytest.param(
        [make_offer("o1", "a1", cpus=1), make_offer("o2", "a1", cpus=1)],
        Q([(1, small(), 100), (2, small(), 100)]),
        {"a1": [1, 2]},
        id="two-offers-of-one-agent-one-accept",
    ),
    pytest.param(
        [make_offer("o1", "a1", mem=100)],
        Q([(1, small(mem=128), 100)]),
        {},
        id="mem-respected",
    ),
    pytest.param(
        [make_offer("o1", "a1", disk=50), make_offer("o2", "a2", disk=500)],
        Q([(1, small(disk=100), 100)]),
        {"a2": [1]},
        id="disk-respected",
    ),
    pytest.param(
        [make_offer("o1", "a1"), make_offer("o2", "a2", gpus=2)],
        Q([(1, small(gpus=1), 100), (2, small(gpus=1), 100), (3, small(gpus=1), 100)]),
        {"a2": [1, 2]},
        id="gpus-respected",
    ),
    pytest.param(
        [make_offer("o1", "a1", ports=((31000, 31001),)), make_offer("o2", "a2", ports=((1, 9),))],
        Q([(1, small(ports=2), 100), (2, small(ports=2), 100)]),
        {"a1": [1], "a2": [2]},
        id="ports-respected",
    ),
    pytest.param(
        [make_offer("o1", "a1", hostname="alpha"), make_offer("o2", "a2", hostname="beta")],
        Q([(1, small(constraints={"hostname": "beta"}), 100)]),
        {"a2": [1]},
        id="hostname-constraint",
    ),
    pytest.param(
        [
            make_offer("o1", "a1", attributes={"rack": "r1"}),
            make_offer("o2", "a2", attributes={"rack": "r2"}),
        ],
        Q(
            [
                (1, small(constraints={"rack": "r2"}), 100),
                (2, small(constraints={"rack": "r9"}), 100),
            ]
        ),
        {"a2": [1]},
        id="attribute-constraint",
    ),
    pytest.param(
        [make_offer("o1", "a1", cpus=0.3)],
        Q([(1, small(cpus=0.1), 100), (2, small(cpus=0.1), 100), (3, small(cpus=0.1), 100)]),
        {"a1": [1, 2, 3]},
        id="fractional-cpus-without-float-dust",
    ),
    pytest.param(
        [make_offer("o1", "a1", hostname="paused"), make_offer("o2", "a2")],
        Q([(1, small(), 100)]),
        {"a2": [1]},
        id="paused-node-skipped",
    ),
]


@pytest.mark.parametrize(("offers", "queue", "expected"), CASES)
def test_placements(offers: list[Offer], queue: Q, expected: dict[str, list[int]]) -> None:
    result = run(offers, queue, blocked={"paused": HostBlock.PAUSED})
    assert placed(result) == expected
    decided = [oid for launch in result.launches for oid in launch.offer_ids]
    decided += [oid for decline in result.declines for oid in decline.offer_ids]
    assert sorted(decided) == sorted(o.id.value for o in offers), "every offer decided once"


def test_launched_resources_copy_role_and_allocation_info() -> None:
    reserved = Resource(
        name="cpus",
        type="SCALAR",
        scalar=Scalar(2.0),
        role="analytics",
        allocation_info=AllocationInfo("analytics"),
        reservations=[{"type": "STATIC", "role": "analytics"}],
    )
    offer = make_offer("o1", "a1", cpus=1, role="analytics", extra=(reserved,))
    result = run([offer], Q([(1, small(cpus=2), 100)]))
    (launch,) = result.launches
    cpus = [r for r in launch.placements[0].resources if r.name == "cpus"]
    # 1 cpu from the first resource, 1 from the reserved one, each keeping its own shape.
    assert [r.scalar.value for r in cpus if r.scalar] == [1.0, 1.0]
    assert cpus[1].reservations == [{"type": "STATIC", "role": "analytics"}]
    assert all(r.allocation_info == AllocationInfo("analytics") for r in cpus)
    assert all(r.role == "analytics" for r in cpus)


def test_each_role_is_its_own_bin() -> None:
    # 1 cpu under each role: a 2-cpu task may not mix roles.
    offers = [make_offer("o1", "a1", cpus=1, role="r1"), make_offer("o2", "a1", cpus=1, role="r2")]
    result = run(offers, Q([(1, small(cpus=2), 100), (2, small(), 100), (3, small(), 100)]))
    assert placed(result) == {"a1": [2, 3]}
    roles = {
        r.allocation_info.role
        for p in result.launches[0].placements
        for r in p.resources
        if r.allocation_info
    }
    assert roles == {"r1", "r2"}


def test_ports_are_assigned_from_offered_ranges() -> None:
    offer = make_offer("o1", "a1", ports=((31000, 31001), (31005, 31010)))
    result = run([offer], Q([(1, small(ports=3), 100), (2, small(ports=2), 100)]))
    first, second = result.launches[0].placements
    assert first.ports == (31000, 31001, 31005)
    assert second.ports == (31006, 31007)
    ranges = next(r for r in first.resources if r.name == "ports").ranges
    assert ranges is not None
    assert [(r.begin, r.end) for r in ranges.range] == [(31000, 31001), (31005, 31005)]


@pytest.mark.parametrize(
    ("offers", "shape", "reason", "message"),
    [
        ([make_offer("o1", "a1", cpus=8)], small(cpus=64), WaitReason.CPUS, "no offer has 64 cpus"),
        ([make_offer("o1", "a1", mem=512)], small(mem=1024), WaitReason.MEM, "1024 MiB mem"),
        ([make_offer("o1", "a1")], small(gpus=1), WaitReason.GPUS, "no offer has 1 gpus"),
        ([make_offer("o1", "a1")], small(ports=1), WaitReason.PORTS, "no offer has 1 ports"),
        (
            [make_offer("o1", "a1")],
            small(constraints={"hostname": "x"}),
            WaitReason.CONSTRAINTS,
            "no offer matches hostname=x",
        ),
        (
            [make_offer("o1", "a1", cpus=4, mem=100), make_offer("o2", "a2", cpus=1, mem=4000)],
            small(cpus=2, mem=1000),
            WaitReason.RESOURCES,
            "together",
        ),
    ],
)
def test_waiting_reason_per_group(
    offers: list[Offer], shape: dict[str, object], reason: WaitReason, message: str
) -> None:
    result = run(offers, Q([(1, shape, 100), (2, shape, 100)]))
    assert result.launches == ()
    (waiting,) = result.waiting  # one verdict for the whole group, not one per task
    assert waiting.reason is reason
    assert message in waiting.message


def test_scheduler_paused_declines_everything() -> None:
    result = run(
        [make_offer("o1", "a1"), make_offer("o2", "a2")], Q([(1, small(), 100)]), paused=True
    )
    assert result.launches == ()
    (decline,) = result.declines
    assert decline.reason is DeclineReason.SCHEDULER_PAUSED
    assert set(decline.offer_ids) == {"o1", "o2"}
    assert [w.reason for w in result.waiting] == [WaitReason.SCHEDULER_PAUSED]


def test_no_resource_bins_when_paused_or_nothing_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declining everything must neither decode resources nor build bins (B1: offers/s while
    paused or idle). A bin is built from its offer's resources: decoding them fails the test."""

    def undecodable(self: object) -> list[Resource]:
        raise AssertionError("resources decoded although no task could use them")

    monkeypatch.setattr(Offer, "resources", property(undecodable))
    monkeypatch.setattr(Offer, "attributes", property(undecodable))
    offers = [make_offer("o1", "a1"), make_offer("o2", "a2"), make_offer("o3", "a1")]
    paused = run(offers, Q([(1, small(), 100)]), paused=True)
    assert [(d.reason, d.offer_ids) for d in paused.declines] == [
        (DeclineReason.SCHEDULER_PAUSED, ("o1", "o2", "o3"))
    ]
    idle = run(offers, Q())
    assert [(d.reason, d.offer_ids) for d in idle.declines] == [
        (DeclineReason.QUEUE_EMPTY, ("o1", "o2", "o3"))
    ]


def test_decline_filters() -> None:
    offers = [
        make_offer("o1", "a1", hostname="p"),
        make_offer("o2", "a2", hostname="i"),
        make_offer("o3", "a3", cpus=0.5),
    ]
    result = run(
        offers,
        Q([(1, small(), 100)]),
        blocked={"p": HostBlock.PAUSED, "i": HostBlock.INACTIVE},
    )
    by_reason = {d.reason: d for d in result.declines}
    assert by_reason[DeclineReason.NODE_PAUSED].refuse_seconds == 5.0
    assert by_reason[DeclineReason.NODE_INACTIVE].refuse_seconds == 5.0
    assert by_reason[DeclineReason.NOTHING_FITS].offer_ids == ("o3",)
    assert by_reason[DeclineReason.NOTHING_FITS].refuse_seconds == 120.0
    empty = run([make_offer("o4", "a4")], Q())
    assert [(d.reason, d.refuse_seconds) for d in empty.declines] == [
        (DeclineReason.QUEUE_EMPTY, 120.0)
    ]


def test_only_paused_nodes_offering() -> None:
    result = run(
        [make_offer("o1", "a1", hostname="p")],
        Q([(1, small(), 100)]),
        blocked={"p": HostBlock.PAUSED},
    )
    assert [w.reason for w in result.waiting] == [WaitReason.NODES_PAUSED]


def test_busy_and_non_queued_tasks_are_not_placed() -> None:
    index, tasks = Q([(1, small(), 100), (2, small(), 100), (3, small(), 100)]).build()
    tasks[1].busy = True
    tasks[2].state = TaskState.LAUNCHING
    result = match(
        [make_offer("o1", "a1")], index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS
    )
    assert placed(result) == {"a1": [3]}


class CountingQueue:
    """Wraps a queue view and counts how many task ids the matcher pulled."""

    def __init__(self, inner: QueueIndex) -> None:
        self.inner = inner
        self.pulled = 0

    def levels(self) -> Iterator[Sequence[GroupView]]:
        return self.inner.levels()

    def eligible_runs(self, group: GroupView) -> Iterator[list[int]]:
        for run in self.inner.eligible_runs(group):  # type: ignore[arg-type]
            self.pulled += len(run)
            yield run


def test_a_pass_does_not_scan_the_queue() -> None:
    # 100,000 queued tasks that fit nowhere ahead of 10 that fit: the matcher pulls one id per
    # blocked group plus the placed tasks, never the whole queue.
    specs: list[tuple[int, dict[str, object], int]] = [
        (i, small(cpus=64), 1) for i in range(1, 100_001)
    ]
    specs += [(100_000 + i, small(), 100) for i in range(1, 11)]
    index, _ = Q(specs).build()
    counting = CountingQueue(index)
    offers = [make_offer(f"o{i}", f"a{i}", cpus=1) for i in range(100)]
    result = match(offers, counting, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS)
    assert result.placed == 10
    assert counting.pulled <= 20


def test_a_blocked_group_is_not_retried_against_every_agent() -> None:
    # 2,000 tasks of a shape that fits none of 200 agents: one scan of the agents, not 2,000.
    specs = [(i, small(mem=9999), 100) for i in range(1, 2001)]
    index, _ = Q(specs).build()
    counting = CountingQueue(index)
    offers = [make_offer(f"o{i}", f"a{i}", mem=9000) for i in range(200)]
    result = match(offers, counting, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS)
    assert result.placed == 0
    assert counting.pulled == 1


def test_offer_with_unknown_resource_kinds_is_harmless() -> None:
    offer = make_offer(
        "o1",
        "a1",
        extra=(
            Resource(name="network_bandwidth", type="SCALAR", scalar=Scalar(10)),
            Resource(name="cpus", type="SCALAR", scalar=Scalar(8), revocable={}),
        ),
    )
    result = run([offer], Q([(1, small(cpus=4), 100), (2, small(cpus=4), 100)]))
    assert placed(result) == {"a1": [1]}  # revocable cpus are not used for ordinary tasks


def test_agent_ids_and_offer_ids_in_launch() -> None:
    offers = [make_offer("o1", "a1", cpus=1), make_offer("o2", "a1", cpus=1)]
    result = run(offers, Q([(1, small(), 100)]))
    (launch,) = result.launches
    assert launch.agent_id == "a1"
    assert launch.offer_ids == ("o1", "o2")
    assert launch.hostname == "host-a1"
    assert Value("o1") == offers[0].id


@pytest.mark.parametrize("seed", range(40))
def test_runs_of_equal_tasks_place_exactly_as_one_by_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of equal tasks placed at once leaves every bin and every launch as placing them one
    ``consume`` at a time does: same agents, task ids, resources, and what is left over."""
    import random

    rng = random.Random(seed)
    offers = []
    for i in range(rng.randrange(1, 6)):
        extra = ()
        if rng.random() < 0.5:  # a second cpus entry (e.g. reserved): needs may split across
            extra = (
                Resource(
                    name="cpus",
                    type="SCALAR",
                    scalar=Scalar(rng.choice([0.5, 1.0, 2.7])),
                    role="*",
                    allocation_info=AllocationInfo("*"),
                ),
            )
        offers.append(
            make_offer(
                f"o{i}",
                f"a{i}",
                cpus=rng.choice([0.9, 2.0, 3.3, 8.0, 32.0]),
                mem=rng.choice([300.0, 1024.0, 4096.0]),
                disk=rng.choice([0.0, 100.0]),
                extra=extra,
            )
        )
    shape = small(cpus=rng.choice([0.1, 0.3, 0.5, 1.0, 1.7]), mem=rng.choice([0.0, 64.0, 100.0]))
    if rng.random() < 0.3:
        shape["disk"] = 7.0
    later = small(cpus=rng.choice([0.2, 1.0]), mem=rng.choice([0.0, 32.0]))
    count = rng.randrange(2, 400)
    # Two priorities, one group each: the second places on what the first left over.
    queue = Q(
        [(task_id, shape, 200) for task_id in range(1, count)]
        + [(task_id, later, 100) for task_id in range(count, count + rng.randrange(1, 200))]
    )
    batched = run(offers, queue)
    monkeypatch.setattr(Bin, "repeatable", lambda self, shape, needs, cap=-1: (0, ()))
    one_by_one = run(offers, queue)
    assert batched.placed > 0 or one_by_one.placed == 0
    assert batched == one_by_one


def test_a_run_of_equal_tasks_is_placed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    original = Bin.repeatable

    def spy(self: Bin, shape: object, needs: object, cap: int = -1) -> object:
        times, same = original(self, shape, needs, cap)  # type: ignore[arg-type]
        runs.append(times)
        return times, same

    monkeypatch.setattr(Bin, "repeatable", spy)
    result = run(
        [make_offer("o1", "a1", cpus=32, mem=32 * 128)],
        Q([(i, small(), 100) for i in range(1, 41)]),
    )
    assert result.placed == 32
    assert runs[0] == 32  # one run of 32 tasks, not 32 single placements
