"""Why a group waits: the ``WaitReason`` and ``waiting_reason`` text of a group that fits no
offering agent in this pass. Pure; computed once per shape and pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scale_scheduler.daemon.scheduling.match_model import GroupView, GroupWaiting, WaitReason
from scale_scheduler.daemon.scheduling.offer_bins import EPSILON, Bin
from scale_scheduler.daemon.scheduling.scoped_search import ScopedSearch
from scale_scheduler.state.domain import Shape, describe_constraint
from scale_scheduler.state.placement_constraints import HOSTNAME, Constraint, Operator, admits

Verdict = tuple[WaitReason, str]


class WaitVerdicts:
    """The verdicts of one pass, over its bins (read when a group is given up, not before)."""

    def __init__(self, bins: Sequence[Bin], scoped: ScopedSearch) -> None:
        self.bins = bins
        self.scoped = scoped
        self.verdicts: dict[Shape, Verdict] = {}
        self.candidates: dict[Shape, list[Bin]] = {}
        """Per shape's agent part: the agents its static constraints admit."""
        self.shortages: dict[tuple[float, float, float, int, int], Verdict] = {}

    def explain(self, group: GroupView) -> GroupWaiting:
        """One reason for a group that fits nowhere."""
        shape = group.shape
        verdict = self.verdicts.get(shape)
        if verdict is None:
            verdict = self.verdicts[shape] = self._verdict(shape)
        return GroupWaiting(group.priority, shape, verdict[0], verdict[1])

    def _verdict(self, shape: Shape) -> Verdict:
        """The first resource no candidate offers has enough of, or the constraints."""
        resources = (shape.cpus, shape.mem, shape.disk, shape.gpus, shape.ports)
        candidates: Sequence[Bin] | None
        fit = self.scoped.agent_parts.of(shape)
        if shape.static:
            candidates = self.candidates.get(fit)  # shapes that differ in group share them
            if candidates is None:
                candidates = self.candidates[fit] = [b for b in self.bins if b.satisfies(fit)]
            if not candidates:
                wanted = ", ".join(describe_constraint(c) for c in shape.static)
                return WaitReason.CONSTRAINTS, f"no offer matches {wanted}"
        else:
            candidates = self.bins
            # A resource no agent has enough of stays short for the rest of the pass (resources
            # only shrink): shapes that differ in their scoped constraints only share the verdict.
            short = self.shortages.get(resources)
            if short is not None:
                return short
        if shape.scoped:
            fitting = [b for b in candidates if b.fits(fit)]
            if fitting:
                return WaitReason.CONSTRAINTS, self._scoped_verdict(shape, fitting)
        verdict = _resource_verdict(shape, candidates)
        if not shape.static and verdict[0] is not WaitReason.RESOURCES:
            self.shortages[resources] = verdict
        return verdict

    def _scoped_verdict(self, shape: Shape, fitting: list[Bin]) -> str:
        """Which scoped constraint keeps the group's next task off every agent that fits it."""
        counts = self.scoped.counts_of(shape)
        known_values = self.scoped.known_values
        blocked_by: dict[Constraint, int] = {}
        for bin_ in fitting:
            for constraint in shape.scoped:
                name = constraint.field
                if not admits(constraint, bin_.values, counts.get(name), known_values(name)):
                    blocked_by[constraint] = blocked_by.get(constraint, 0) + 1
                    break
        group = shape.group
        for constraint, blocked in blocked_by.items():
            if blocked == len(fitting):
                return _blocking_message(constraint, group, counts.get(constraint.field, _NONE))
        named = ", ".join(str(c) for c in blocked_by)
        return f"{named}: no offering host admits another task of group {group}"


def _resource_verdict(shape: Shape, candidates: Sequence[Bin]) -> Verdict:
    for reason, attr, unit in (
        (WaitReason.CPUS, "cpus", " cpus"),
        (WaitReason.MEM, "mem", " MiB mem"),
        (WaitReason.DISK, "disk", " MiB disk"),
        (WaitReason.GPUS, "gpus", " gpus"),
        (WaitReason.PORTS, "ports", " ports"),
    ):
        need = getattr(shape, attr)
        if need > max(getattr(b, attr) for b in candidates) + EPSILON:
            return reason, f"no offer has {_fmt(need)}{unit}"
    return WaitReason.RESOURCES, f"no offer has {shape.describe()} together"


def _blocking_message(constraint: Constraint, group: str | None, counts: Mapping[str, int]) -> str:
    """The waiting reason of a scoped constraint that blocks every offering agent."""
    name = constraint.field
    where = "host" if name == HOSTNAME else f"host's {name}"
    operator = constraint.operator
    if operator is Operator.UNIQUE:
        runs = "runs" if name == HOSTNAME else "has"
        return f"{constraint}: every offering {where} already {runs} a task of group {group}"
    if operator is Operator.MAX_PER:
        return (
            f"{constraint}: every offering {where} already has {constraint.number} tasks of "
            f"group {group}"
        )
    if operator is Operator.CLUSTER:
        used = ", ".join(sorted(v for v, n in counts.items() if n > 0))
        return f"{constraint}: group {group} runs on {name} {used}, which no offering host has"
    return (
        f"{constraint}: every offering {where} already has more tasks of group {group} than "
        f"the least used {name}, or fewer {name} values than it spreads over are in use"
    )


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


_NONE: Mapping[str, int] = {}
