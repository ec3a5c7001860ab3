"""One pass of placement: the queue's groups, priority by priority, onto the offers' bins. Pure.

- Tasks are placed by priority (lower first), then submission order, first fit over the agents
  in offer order; resources are subtracted as they are consumed.
- A group (same priority and shape) that fits no agent is skipped whole with one
  ``GroupWaiting``; the tasks behind it keep going (no head-of-line blocking).
- Each shape keeps a cursor over the agents (shared by shapes that differ only in their group
  and scoped constraints): resources only shrink during a pass, so an agent that could not take
  a shape once never can later in the same pass. A pass costs about (tasks placed + groups x
  agents), however long the queue.
- Which way a group is placed is decided once per group, not per task: a shape with scoped
  constraints goes through ``ScopedSearch`` one task at a time; any other shape is placed in
  runs of equal tasks on one bin (``Bin.repeatable``), and pays nothing for constraints or for
  hosts to avoid unless the pass has tasks to keep off hosts where they failed (``avoid``).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

from scale_scheduler.daemon.mesos.mesos_types import Resource
from scale_scheduler.daemon.scheduling.match_model import (
    GroupView,
    GroupWaiting,
    PlacementView,
    QueueView,
    TaskPlacement,
    flow_waiting,
)
from scale_scheduler.daemon.scheduling.offer_bins import EPSILON, Bin, Needs, needs_of
from scale_scheduler.daemon.scheduling.scoped_search import AgentParts, ScopedSearch
from scale_scheduler.daemon.scheduling.wait_verdicts import WaitVerdicts
from scale_scheduler.state.domain import Shape

Placements = dict[int, list[TaskPlacement]]
"""Per agent (its position among the offering agents), the tasks placed on it."""

_new_tuple = tuple.__new__  # a TaskPlacement without its Python-level __new__ (once per task)
_NO_LIMIT = 2**63


def _placements(task_ids: list[int], resources: tuple[Resource, ...]) -> Iterator[TaskPlacement]:
    """A run's placements, made without a bytecode per task (the run's tasks share their
    resources): the largest cost of placing a queue of equal tasks after the bins."""
    count = len(task_ids)
    return map(
        _new_tuple, repeat(TaskPlacement, count), zip(task_ids, repeat(resources), repeat(()))
    )


class _Lane:
    """What placing one group needs, worked out once when the pass reaches the group."""

    __slots__ = (
        "at",
        "fit",
        "group",
        "group_name",
        "key",
        "needs",
        "run",
        "runs",
        "scoped",
        "shape",
    )

    def __init__(self, group: GroupView, needs: Needs, fit: Shape) -> None:
        shape = group.shape
        self.group = group
        self.shape = shape
        self.fit = fit
        self.key = id(fit)
        """The cursor's key (``PlacementPass.cursors``)."""
        self.needs = needs
        self.scoped = bool(shape.scoped)
        self.group_name = shape.group
        """Set when the group's placements count for scoped constraints (of this or another
        shape of the group)."""
        self.runs: Iterator[list[int]] = iter(())
        """The group's eligible ids after ``run`` (``QueueView.eligible_runs``)."""
        self.run: list[int] = []
        self.at = 0
        """The position in ``run`` of the group's next task."""


class PlacementPass:
    """Placement state of one pass: bins, per-shape cursors, the launch budget, and upper bounds
    of free resources."""

    def __init__(
        self,
        bins: list[Bin],
        budget: int | None = None,
        placement: PlacementView | None = None,
        avoid: Mapping[int, Collection[str]] | None = None,
    ) -> None:
        self.bins = bins
        self.avoid = avoid or None
        """Per task, hosts it failed on (None: no task has any)."""
        self.avoided_ids = sorted(avoid) if avoid else []
        """The tasks of ``avoid`` in id order: a run of equal tasks ends before the next one."""
        self.budget = budget if budget is not None else -1
        """Placements left (-1: no limit)."""
        self.budget_spent = False
        """Some group stayed unplaced because the budget ran out."""
        self.cursors: dict[int, int] = {}
        """Per shape (by ``id``: a ``Shape`` hashes in Python, and the pass looks cursors up
        about once per task; every shape keyed is held by the queue or ``agent_parts`` for the
        pass), the first agent that may still take it."""
        self.needs: dict[Shape, Needs] = {}
        self.agent_parts = AgentParts()
        self.scoped = ScopedSearch(bins, self.cursors, self.agent_parts, placement)
        self.verdicts = WaitVerdicts(bins, self.scoped)
        # Resources only shrink during a pass, so the maxima at its start stay upper bounds.
        self.max_cpus = max(b.cpus for b in bins)
        self.max_mem = max(b.mem for b in bins)
        self.max_disk = max(b.disk for b in bins)
        self.max_gpus = max(b.gpus for b in bins)
        self.max_ports = max(b.ports for b in bins)

    def quick_reject(self, shape: Shape) -> bool:
        return (
            shape.cpus > self.max_cpus + EPSILON
            or shape.mem > self.max_mem + EPSILON
            or shape.disk > self.max_disk + EPSILON
            or shape.gpus > self.max_gpus + EPSILON
            or shape.ports > self.max_ports
        )

    def lane(self, group: GroupView) -> _Lane:
        shape = group.shape
        needs = self.needs.get(shape)
        if needs is None:
            needs = self.needs[shape] = needs_of(shape)
        return _Lane(group, needs, self.agent_parts.of(shape))

    def next_avoided(self, task_id: int) -> int:
        """The first task after ``task_id`` to keep off some hosts (``_NO_LIMIT``: none)."""
        avoided = self.avoided_ids
        index = bisect_right(avoided, task_id)
        return avoided[index] if index < len(avoided) else _NO_LIMIT

    def elsewhere(self, fit: Shape, cursor: int, hosts: Collection[str]) -> Bin | None:
        """An agent past the cursor of ``fit`` (a shape's agent part) that fits and is none of
        ``hosts`` (the cursor stays: the agents it passes over still fit the shape's other
        tasks)."""
        bins = self.bins
        for position in range(cursor, len(bins)):
            bin_ = bins[position]
            if bin_.hostname not in hosts and bin_.fits(fit):
                return bin_
        return None

    def place_level(
        self,
        level: Sequence[GroupView],
        queue: QueueView[Any],
        placements: Placements,
        waiting: list[GroupWaiting],
    ) -> bool:
        """Place one priority's groups, merged by task id; True if any group had tasks."""
        heap: list[tuple[int, int]] = []
        lanes: dict[int, _Lane] = {}
        had_work = False
        for position, group in enumerate(level):
            runs = queue.eligible_runs(group)
            first = next(runs, None)
            if first is None:
                continue
            had_work = True
            if self.budget == 0:
                self.budget_spent = True
                waiting.append(flow_waiting(group))
                continue
            if self.quick_reject(group.shape):
                waiting.append(self.verdicts.explain(group))
                continue
            heap.append((first[0], position))
            lane = lanes[position] = self.lane(group)
            lane.runs, lane.run = runs, first
        if len(heap) == 1:
            lane = lanes[heap[0][1]]
            if lane.scoped:
                self._place_scoped(lane, placements, waiting)
            else:
                self._place_group(lane, placements, waiting)
        elif heap:
            self._merge(heap, lanes, placements, waiting)
        return had_work

    def _merge(
        self,
        heap: list[tuple[int, int]],
        lanes: dict[int, _Lane],
        placements: Placements,
        waiting: list[GroupWaiting],
    ) -> None:
        """Several groups at one priority: the next task is always the lowest id of any group.
        A plain group's run of ids below every other group's is placed at once. The loop runs
        once per run or constrained task (B3's constrained match: about 700 times a pass), so
        what it reads is kept in locals; each lane's ids are read from its current list
        (``_Lane.run`` from ``_Lane.at``), so a run is a slice."""
        heapq.heapify(heap)
        budget = self.budget
        bins, cursors = self.bins, self.cursors
        count = len(bins)
        find_scoped = self.scoped.find
        count_placed, explain = self.scoped.count_placed, self.verdicts.explain
        heapreplace, heappop = heapq.heapreplace, heapq.heappop
        avoid = self.avoid
        while heap:
            task_id, position = heap[0]
            lane = lanes[position]
            if budget == 0:
                self.budget_spent = True
                waiting.extend(flow_waiting(lanes[item[1]].group) for item in heap)
                break
            shape = lane.shape
            size = len(heap)
            if size > 2:
                limit = heap[1][0] if heap[1][0] < heap[2][0] else heap[2][0]
            else:
                limit = heap[1][0] if size == 2 else _NO_LIMIT
            run, at = lane.run, lane.at
            if lane.scoped:
                found = find_scoped(shape)
                if found is None:
                    heappop(heap)
                    waiting.append(explain(lane.group))
                    continue
                bin_ = found
                resources, ports = bin_.consume(shape, lane.needs)
                placed = placements.get(bin_.agent)
                if placed is None:
                    placed = placements[bin_.agent] = []
                placed.append(_new_tuple(TaskPlacement, (task_id, resources, ports)))
                taken = 1
            else:
                fit = lane.fit
                cursor = cursors.get(lane.key, 0)
                while cursor < count and not bins[cursor].fits(fit):
                    cursor += 1
                cursors[lane.key] = cursor
                if cursor == count:
                    heappop(heap)
                    waiting.append(explain(lane.group))
                    continue
                bin_ = bins[cursor]
                single = False
                cut = limit
                if avoid is not None:
                    avoided = avoid.get(task_id)
                    if avoided is not None:
                        single = True  # placed on its own, where it did not fail if it can
                        if bin_.hostname in avoided:
                            bin_ = self.elsewhere(fit, cursor, avoided) or bin_
                    stop = self.next_avoided(task_id)
                    if stop < cut:
                        cut = stop
                # The group's next ids that come before every other group's: the same run of
                # placements on this agent that one task at a time would make (_place_group).
                end = len(run)
                if cut - task_id < end - at:
                    end = at + cut - task_id  # ids grow by at least 1: none past this is < cut
                if 0 < budget < end - at:
                    end = at + budget
                if end - at > 1 and run[end - 1] >= cut:
                    end = bisect_left(run, cut, at, end)
                needs = lane.needs
                placed = placements.get(bin_.agent)
                if placed is None:
                    placed = placements[bin_.agent] = []
                available = end - at
                times, same = (
                    (0, ())
                    if single or available <= 1
                    else bin_.repeatable(shape, needs, available)
                )
                if times > 1:
                    placed.extend(_placements(run[at : at + times], same))
                    bin_.take_repeated(needs, times)
                    taken = times
                else:
                    resources, ports = bin_.consume(shape, needs)
                    placed.append(_new_tuple(TaskPlacement, (task_id, resources, ports)))
                    taken = 1
            if lane.group_name is not None:
                count_placed(lane.group_name, bin_, taken)
            if budget > 0:
                budget -= taken
            at += taken
            if at == len(run):
                following = next(lane.runs, None)
                if following is None:
                    heappop(heap)
                    continue
                run = lane.run = following
                at = 0
            lane.at = at
            following_id = run[at]
            if following_id < limit:  # still the lowest: the heap's order holds
                heap[0] = (following_id, position)
            else:
                heapreplace(heap, (following_id, position))
        self.budget = budget

    def _place_group(
        self, lane: _Lane, placements: Placements, waiting: list[GroupWaiting]
    ) -> None:
        """The only group with tasks at its priority, a plain one: place them in id order, no
        merge, with the shape's cursor and the agent's list kept in locals (this loop runs once
        per run of tasks placed: B3 in bench/RESULTS.md)."""
        shape, fit, needs, group = lane.shape, lane.fit, lane.needs, lane.group_name
        bins = self.bins
        count = len(bins)
        cursor = self.cursors.get(id(fit), 0)
        agent = -1
        placed: list[TaskPlacement] = []
        runs: Iterator[list[int]] = lane.runs
        run: list[int] | None = lane.run
        at = 0
        budget = self.budget
        avoid = self.avoid
        count_placed = self.scoped.count_placed
        while run is not None:
            if at == len(run):
                run, at = next(runs, None), 0
                continue
            task_id = run[at]
            if budget == 0:
                self.budget_spent = True
                waiting.append(flow_waiting(lane.group))
                break
            while cursor < count and not bins[cursor].fits(fit):
                cursor += 1
            if cursor == count:
                waiting.append(self.verdicts.explain(lane.group))
                break
            bin_ = bins[cursor]
            if avoid is not None and task_id in avoid:
                other = self.elsewhere(fit, cursor, avoid[task_id])
                if other is not None and other is not bin_:
                    resources, ports = other.consume(shape, needs)
                    placements.setdefault(other.agent, []).append(
                        TaskPlacement(task_id, resources, ports)
                    )
                    if group is not None:
                        count_placed(group, other)
                    budget -= budget > 0
                    at += 1
                    continue
            if bin_.agent != agent:
                agent = bin_.agent
                placed = placements.setdefault(agent, [])
            times, same = bin_.repeatable(shape, needs, budget)
            if times > 1:
                while len(run) - at < times:  # the run goes on in the group's next ids
                    more = next(runs, None)
                    if more is None:
                        break
                    run, at = run[at:] + more, 0
                end = at + times if at + times < len(run) else len(run)
                if avoid is not None:  # the run ends before a task to keep off some hosts
                    stop = self.next_avoided(task_id)
                    if run[end - 1] >= stop:
                        end = bisect_left(run, stop, at, end)
                taken = end - at
                placed.extend(_placements(run[at:end], same))
                bin_.take_repeated(needs, taken)
                if group is not None:
                    count_placed(group, bin_, taken)
                if budget > 0:
                    budget -= taken
                at = end
                continue
            resources, ports = bin_.consume(shape, needs)
            placed.append(TaskPlacement(task_id, resources, ports))
            if group is not None:
                count_placed(group, bin_)
            budget -= budget > 0
            at += 1
        self.cursors[id(fit)] = cursor
        self.budget = budget

    def _place_scoped(
        self, lane: _Lane, placements: Placements, waiting: list[GroupWaiting]
    ) -> None:
        """The only group with tasks at its priority, with scoped constraints: one task at a
        time, each seeing the counts the ones before it left (hosts to avoid do not enter: the
        constraints alone place it)."""
        shape, needs, group = lane.shape, lane.needs, lane.group_name
        assert group is not None
        find, count_placed = self.scoped.find, self.scoped.count_placed
        run: list[int] | None = lane.run
        while run is not None:
            for task_id in run:
                if self.budget == 0:
                    self.budget_spent = True
                    waiting.append(flow_waiting(lane.group))
                    return
                bin_ = find(shape)
                if bin_ is None:
                    waiting.append(self.verdicts.explain(lane.group))
                    return
                resources, ports = bin_.consume(shape, needs)
                placements.setdefault(bin_.agent, []).append(
                    TaskPlacement(task_id, resources, ports)
                )
                count_placed(group, bin_)
                self.budget -= self.budget > 0
            run = next(lane.runs, None)
