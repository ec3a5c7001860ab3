"""The matcher: offers + queue view + pause flags -> launch and decline decisions. Pure.

Rules:
- offers are grouped by agent; within an agent, by allocation role (one task's resources all come
  from one role); nodes that are paused or inactive are declined, and so is everything while the
  scheduler is paused (``offer_bins``);
- tasks are placed by priority (lower first), then submission order, first fit over the agents in
  offer order; resources are subtracted as they are consumed; launched resources copy the offered
  resource's role, reservations and allocation info and change only the quantity
  (``placement_pass``);
- a group of tasks (same priority and shape) that fits no agent is skipped whole with one
  ``WaitReason`` (``wait_verdicts``), and the tasks behind it keep going (no head-of-line
  blocking);
- placement constraints (Marathon's operators, ``state/placement_constraints.py``): those that
  read only the agent filter like resources do; the scoped ones (``UNIQUE``, ``GROUP_BY``,
  ``MAX_PER``, ``CLUSTER`` without a value) read the group's live tasks per value from the
  ``PlacementView`` (kept as tasks launch and end) plus this pass's own placements, so a batch of
  one group placed in one pass respects them too (``scoped_search``);
- each shape keeps a cursor over the agents (shared by shapes that differ only in their group
  and scoped constraints): resources only shrink during a pass, so an agent that could not take
  a shape once never can later in the same pass. A pass therefore costs
  about (tasks placed + groups x agents), however long the queue;
- every offer ends in exactly one decision: part of one agent's launch, or a decline with a
  filter (``refuse_seconds`` for paused nodes, ``idle_refuse_seconds`` when nothing queued fits).

No I/O, no clock, no logging: the offer pipeline acts on the frozen result. This module holds
``match()`` and the decisions it returns; its parts live in the modules named above.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from scale_scheduler.daemon.mesos.mesos_types import Offer
from scale_scheduler.daemon.scheduling.match_model import (
    AgentLaunch,
    Decline,
    DeclineReason,
    GroupView,
    GroupWaiting,
    MatchResult,
    MatchSettings,
    PlacementView,
    QueueView,
    TaskPlacement,
    WaitReason,
)
from scale_scheduler.daemon.scheduling.offer_bins import (
    SCALARS,
    HostBlock,
    agent_values,
    group_offers,
)
from scale_scheduler.daemon.scheduling.placement_pass import PlacementPass

__all__ = [
    "SCALARS",
    "AgentLaunch",
    "Decline",
    "DeclineReason",
    "GroupView",
    "GroupWaiting",
    "HostBlock",
    "MatchResult",
    "MatchSettings",
    "PlacementView",
    "QueueView",
    "TaskPlacement",
    "WaitReason",
    "agent_values",
    "group_offers",
    "match",
]


def match(
    offers: Sequence[Offer],
    queue: QueueView[Any],
    *,
    scheduler_paused: bool,
    blocked_hosts: Mapping[str, HostBlock],
    settings: MatchSettings,
    launch_budget: int | None = None,
    placement: PlacementView | None = None,
    avoid: Mapping[int, Collection[str]] | None = None,
) -> MatchResult:
    """``launch_budget``: at most this many tasks are placed (None: no limit); groups left
    unplaced because it ran out wait with ``WaitReason.FLOW_CONTROL``. ``placement``: the
    groups' live tasks per value, for scoped constraints (None: no group has any). ``avoid``:
    per task, the hosts where it failed; it goes to another agent that fits when there is one
    (a soft preference: only tasks named there pay for the search; a shape with scoped
    constraints is placed by those alone)."""
    levels = list(queue.levels())
    if scheduler_paused:
        paused = WaitReason.SCHEDULER_PAUSED
        waiting = tuple(
            GroupWaiting(g.priority, g.shape, paused, "the scheduler is paused")
            for level in levels
            for g in level
        )
        return MatchResult(
            (),
            _decline_all(offers, settings.refuse_seconds, DeclineReason.SCHEDULER_PAUSED),
            waiting,
        )
    if not levels and not blocked_hosts:
        return MatchResult(
            (), _decline_all(offers, settings.idle_refuse_seconds, DeclineReason.QUEUE_EMPTY), ()
        )

    agents = group_offers(offers, blocked_hosts, bins=bool(levels))
    usable = [agent for agent in agents if agent.blocked is None]
    bins = [bin_ for agent in usable for bin_ in agent.bins]
    placements: dict[int, list[TaskPlacement]] = {}
    waiting_list: list[GroupWaiting] = []
    examined = 0
    had_work = False
    state: PlacementPass | None = None

    if not bins:
        if any(agent.blocked is not None for agent in agents):
            reason, message = WaitReason.NODES_PAUSED, "every offering node is paused or inactive"
        else:
            reason, message = WaitReason.NO_OFFERS, "no offers"
        for level in levels:
            for group in level:
                waiting_list.append(GroupWaiting(group.priority, group.shape, reason, message))
        had_work = bool(waiting_list)
    else:
        state = PlacementPass(bins, launch_budget, placement, avoid)
        for level in levels:
            examined += len(level)
            had_work |= state.place_level(level, queue, placements, waiting_list)

    launches = []
    declines: dict[DeclineReason, list[str]] = {}
    for index, agent in enumerate(agents):
        placed = placements.get(index)
        if placed:
            launches.append(
                AgentLaunch(agent.agent_id, agent.hostname, tuple(agent.offer_ids), tuple(placed))
            )
            continue
        if agent.blocked is HostBlock.PAUSED:
            why = DeclineReason.NODE_PAUSED
        elif agent.blocked is HostBlock.INACTIVE:
            why = DeclineReason.NODE_INACTIVE
        elif state is not None and state.budget_spent:
            why = DeclineReason.FLOW_CONTROL
        elif had_work:
            why = DeclineReason.NOTHING_FITS
        else:
            why = DeclineReason.QUEUE_EMPTY
        declines.setdefault(why, []).extend(agent.offer_ids)
    decisions = tuple(
        Decline(
            tuple(ids),
            _refuse_for(why, settings),
            why,
        )
        for why, ids in declines.items()
    )
    return MatchResult(tuple(launches), decisions, tuple(waiting_list), examined)


def _refuse_for(why: DeclineReason, settings: MatchSettings) -> float:
    if why in (DeclineReason.NODE_PAUSED, DeclineReason.NODE_INACTIVE):
        return settings.refuse_seconds
    if why is DeclineReason.FLOW_CONTROL:
        return settings.flow_refuse_seconds
    return settings.idle_refuse_seconds


def _decline_all(
    offers: Sequence[Offer], refuse_seconds: float, reason: DeclineReason
) -> tuple[Decline, ...]:
    """One decline of every offer (no resource is read)."""
    if not offers:
        return ()
    return (Decline(tuple([o.id.value for o in offers]), refuse_seconds, reason),)
