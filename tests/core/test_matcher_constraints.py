"""The matcher's placement constraints: unit cases, and a property test against a slow reference.

The reference places the same queue the way the matcher documents it, from first principles:
tasks in id order (one priority), each on the first offering agent, in offer order, that has the
resources left and that every constraint admits, counting the group's live tasks and the pass's
earlier placements by scanning them all; a shape that fits nowhere is skipped for the rest of
the pass (the matcher's "a group that fits no agent is skipped whole"). With that order fixed,
"any task the reference can place is not left waiting" means both place exactly the same tasks
on the same agents; and replaying the matcher's placements one by one, no constraint refuses
any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corekit import make_offer
from hypothesis import given, settings
from hypothesis import strategies as st

from scale_scheduler.daemon.mesos.mesos_types import Offer
from scale_scheduler.daemon.scheduling.matcher import MatchSettings, WaitReason, agent_values, match
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import Shape, ShapeInterner, TaskState, constraints_from
from scale_scheduler.state.placement_constraints import AgentValues, admits
from scale_scheduler.state.placement_counts import PlacementCounts
from scale_scheduler.state.tasks import Task

SETTINGS = MatchSettings(refuse_seconds=5.0, idle_refuse_seconds=120.0)
RACKS = ("r0", "r1", "r2")
ZONES = ("z0", "z1", "z2", None)
CONSTRAINT_SETS: list[list[list[str]]] = [
    [],
    [["hostname", "UNIQUE"]],
    [["rack", "UNIQUE"]],
    [["rack", "GROUP_BY", "2"]],
    [["rack", "GROUP_BY"]],
    [["rack", "MAX_PER", "2"]],
    [["hostname", "MAX_PER", "1"]],
    [["rack", "CLUSTER"]],
    [["rack", "CLUSTER", "r1"]],
    [["zone", "LIKE", "z[01]"]],
    [["zone", "UNLIKE", "z0"]],
    [["rack", "IS", "r2"]],
    [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]],
    [["rack", "MAX_PER", "1"], ["zone", "UNLIKE", "z1"]],
    [["zone", "GROUP_BY", "2"], ["rack", "CLUSTER"]],
]


@dataclass(frozen=True)
class Agent:
    hostname: str
    rack: str
    zone: str | None
    cpus: int

    def values(self) -> AgentValues:
        attributes = {"rack": self.rack} | ({"zone": self.zone} if self.zone else {})
        return AgentValues(self.hostname, attributes)

    def offer(self) -> Offer:
        attributes = {"rack": self.rack} | ({"zone": self.zone} if self.zone else {})
        return make_offer(
            f"o-{self.hostname}", f"a-{self.hostname}", cpus=self.cpus, mem=4096,
            hostname=self.hostname, attributes=attributes,
        )  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    offering: list[Agent]
    others: list[Agent]
    """Agents of the cluster that offer nothing in this pass (they may run the group's tasks)."""
    live: list[tuple[str, int]]
    """(group, index into offering + others) of tasks already running."""
    tasks: list[tuple[str, int, int]]
    """(group, constraint set, cpus) per queued task, in id order."""


def agents(count: int, prefix: str) -> st.SearchStrategy[list[Agent]]:
    return st.lists(
        st.builds(
            lambda i, rack, zone, cpus: (rack, zone, cpus),
            st.just(0),
            st.sampled_from(RACKS),
            st.sampled_from(ZONES),
            st.integers(0, 4),
        ),
        min_size=0 if prefix == "x" else 1,
        max_size=count,
    ).map(lambda rows: [Agent(f"{prefix}{i}", *row) for i, row in enumerate(rows)])


scenarios = st.builds(
    lambda offering, others, live, tasks: Scenario(
        offering, others, [(g, i % (len(offering) + len(others))) for g, i in live], tasks
    ),
    agents(7, "h"),
    agents(2, "x"),
    st.lists(st.tuples(st.sampled_from(["g0", "g1"]), st.integers(0, 8)), max_size=6),
    st.lists(
        st.tuples(
            st.sampled_from(["g0", "g1"]),
            st.integers(0, len(CONSTRAINT_SETS) - 1),
            st.integers(1, 2),
        ),
        min_size=1,
        max_size=16,
    ),
)


def shapes(scenario: Scenario) -> list[Shape]:
    interner = ShapeInterner()
    return [
        interner.get(
            cpus, 16, constraints=constraints_from(CONSTRAINT_SETS[which], group), group=group
        )
        for group, which, cpus in scenario.tasks
    ]


def fast(scenario: Scenario) -> tuple[dict[int, str], list[WaitReason]]:
    """The matcher: task id -> hostname, and the waiting groups' reasons."""
    cluster = scenario.offering + scenario.others
    counts = PlacementCounts()
    for agent in cluster:
        counts.learn(agent.values())
    for group, index in scenario.live:
        counts.launched(cluster[index].hostname, group)
    tasks: dict[int, Task] = {}
    index_ = QueueIndex(tasks)
    for task_id, shape in enumerate(shapes(scenario), start=1):
        task = Task(task_id, 100, shape, b"{}", TaskState.QUEUED, 1)
        tasks[task_id] = task
        index_.add(task)
    offers = [agent.offer() for agent in scenario.offering]
    result = match(
        offers,
        index_,
        scheduler_paused=False,
        blocked_hosts={},
        settings=SETTINGS,
        placement=counts,
    )
    placed = {p.task_id: launch.hostname for launch in result.launches for p in launch.placements}
    return placed, [waiting.reason for waiting in result.waiting]


def slow_counts(
    placed: Sequence[tuple[str, AgentValues]], group: str, field: str
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for their_group, values in placed:
        value = values.text(field)
        if their_group == group and value is not None:
            counts[value] = counts.get(value, 0) + 1
    return counts


def refusal(
    shape: Shape,
    values: AgentValues,
    placed: Sequence[tuple[str, AgentValues]],
    cluster: Sequence[Agent],
) -> str | None:
    """The first constraint refusing one more task of ``shape`` on the agent, from scratch."""
    for constraint in shape.constraints:
        name = constraint.field
        counts = slow_counts(placed, shape.group or "", name) if constraint.scoped else None
        known = len({a.values().text(name) for a in cluster} - {None})
        if not admits(constraint, values, counts, known):
            return str(constraint)
    return None


def reference(scenario: Scenario) -> dict[int, str]:
    cluster = scenario.offering + scenario.others
    placed: list[tuple[str, AgentValues]] = [
        (group, cluster[index].values()) for group, index in scenario.live
    ]
    free = {agent.hostname: agent.cpus for agent in scenario.offering}
    skipped: set[Shape] = set()
    out: dict[int, str] = {}
    for task_id, shape in enumerate(shapes(scenario), start=1):
        if shape in skipped:
            continue
        for agent in scenario.offering:
            values = agent.values()
            if free[agent.hostname] >= shape.cpus and not refusal(shape, values, placed, cluster):
                free[agent.hostname] -= int(shape.cpus)
                out[task_id] = agent.hostname
                if shape.group is not None:
                    placed.append((shape.group, values))
                break
        else:
            skipped.add(shape)
    return out


@settings(max_examples=300, deadline=None)
@given(scenarios)
def test_the_matcher_places_what_the_reference_places_and_breaks_no_constraint(
    scenario: Scenario,
) -> None:
    placed, _reasons = fast(scenario)
    assert placed == reference(scenario)
    cluster = scenario.offering + scenario.others
    by_host = {agent.hostname: agent for agent in scenario.offering}
    history = [(group, cluster[index].values()) for group, index in scenario.live]
    all_shapes = shapes(scenario)
    for task_id in sorted(placed):
        shape = all_shapes[task_id - 1]
        values = by_host[placed[task_id]].values()
        assert refusal(shape, values, history, cluster) is None, (task_id, shape)
        if shape.group is not None:
            history.append((shape.group, values))


# --- unit cases --------------------------------------------------------------------------------


def run_one(
    offering: list[Agent],
    tasks: list[tuple[str, list[list[str]]]],
    live: Sequence[tuple[str, int]] = (),
    others: Sequence[Agent] = (),
) -> tuple[dict[int, str], list[str]]:
    """One pass; ``live``: (group, index into offering + others) of running tasks."""
    cluster = [*offering, *others]
    counts = PlacementCounts()
    for agent in cluster:
        counts.learn(agent.values())
    for group, index in live:
        counts.launched(cluster[index].hostname, group)
    interner = ShapeInterner()
    queue: dict[int, Task] = {}
    index_ = QueueIndex(queue)
    for task_id, (group, raw) in enumerate(tasks, start=1):
        shape = interner.get(1, 16, constraints=constraints_from(raw, group), group=group)
        queue[task_id] = Task(task_id, 100, shape, b"{}", TaskState.QUEUED, 1)
        index_.add(queue[task_id])
    result = match(
        [a.offer() for a in offering],
        index_,
        scheduler_paused=False,
        blocked_hosts={},
        settings=SETTINGS,
        placement=counts,
    )
    placed = {p.task_id: launch.hostname for launch in result.launches for p in launch.placements}
    return placed, [w.message for w in result.waiting]


def test_a_batch_of_one_group_respects_unique_inside_the_pass() -> None:
    hosts = [Agent(f"h{i}", "r0", None, 4) for i in range(3)]
    placed, waiting = run_one(hosts, [("etl", [["hostname", "UNIQUE"]])] * 5)
    assert sorted(placed.values()) == ["h0", "h1", "h2"]
    assert waiting == ["UNIQUE hostname: every offering host already runs a task of group etl"]


def test_live_tasks_of_the_group_count_and_other_groups_do_not() -> None:
    hosts = [Agent(f"h{i}", "r0", None, 4) for i in range(3)]
    placed, _ = run_one(
        hosts, [("etl", [["hostname", "UNIQUE"]])] * 3, live=[("etl", 0), ("web", 1)]
    )
    assert sorted(placed.values()) == ["h1", "h2"]


def test_group_by_waits_for_the_least_used_values() -> None:
    hosts = [Agent(f"h{i}", f"r{i % 2}", None, 4) for i in range(2)]
    placed, _ = run_one(hosts, [("g", [["rack", "GROUP_BY"]])] * 4, live=[("g", 0)])
    # r0 runs one already: r1 first, then the least used rack each time (r0 ends with 3, r1 2)
    assert placed == {1: "h1", 2: "h0", 3: "h1", 4: "h0"}


def test_max_per_waiting_reason_names_the_bound() -> None:
    hosts = [Agent(f"h{i}", f"r{i % 2}", None, 4) for i in range(4)]
    placed, waiting = run_one(hosts, [("g", [["rack", "MAX_PER", "1"]])] * 3)
    assert len(placed) == 2
    assert waiting == ["MAX_PER rack 1: every offering host's rack already has 1 tasks of group g"]


def test_cluster_without_a_value_follows_where_the_group_runs() -> None:
    running_on = [Agent("x0", "r1", None, 0)]
    hosts = [Agent("h0", "r0", None, 4), Agent("h1", "r1", None, 4)]
    placed, _ = run_one(hosts, [("g", [["rack", "CLUSTER"]])] * 2, [("g", 2)], running_on)
    assert placed == {1: "h1", 2: "h1"}
    placed, waiting = run_one(hosts[:1], [("g", [["rack", "CLUSTER"]])], [("g", 1)], running_on)
    assert placed == {}
    assert waiting == ["CLUSTER rack: group g runs on rack r1, which no offering host has"]
    placed, _ = run_one(hosts, [("g", [["rack", "CLUSTER"]])] * 3)  # the first one decides
    assert placed == {1: "h0", 2: "h0", 3: "h0"}


def test_agent_values_read_the_offers_attributes() -> None:
    offer = make_offer("o", "a", hostname="h", attributes={"rack": "r1"})
    assert agent_values(offer) == AgentValues("h", {"rack": "r1"}, {})


def test_cluster_without_a_value_takes_a_rack_another_shape_of_the_group_just_took() -> None:
    """A group on r1 (live) and r0 (its plain task placed first in this pass): CLUSTER without a
    value admits both, so the agent it refused at the start of the pass takes the third task.
    The matcher's cursor of the shape once skipped that agent for the rest of the pass, as if
    CLUSTER's refusals were final like UNIQUE's (found by the property test above)."""
    scenario = Scenario(
        offering=[Agent("h0", "r0", None, 2), Agent("h1", "r1", None, 1)],
        others=[],
        live=[("g0", 1)],
        tasks=[("g0", 7, 1), ("g0", 0, 1), ("g0", 7, 1)],  # CLUSTER rack, plain, CLUSTER rack
    )
    assert CONSTRAINT_SETS[7] == [["rack", "CLUSTER"]]
    assert CONSTRAINT_SETS[0] == []
    placed, waiting = fast(scenario)
    assert placed == reference(scenario) == {1: "h1", 2: "h0", 3: "h0"}
    assert waiting == []
