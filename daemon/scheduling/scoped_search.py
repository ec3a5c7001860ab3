"""Scoped placement constraints during one pass: the groups' counts per value, and the search
for an agent that admits one more task of a group. Pure.

The scoped operators (``UNIQUE``, ``GROUP_BY``, ``MAX_PER``, ``CLUSTER`` without a value) read
the group's live tasks per value from the ``PlacementView`` (kept as tasks launch and end, never
recounted here) plus this pass's own placements, so a batch of one group placed in one pass
respects them too. The pass's placements go into a copy of the group's counts made at its first
placement in the pass (the group's values, not its tasks); the live counts are never written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scale_scheduler.daemon.scheduling.match_model import PlacementView
from scale_scheduler.daemon.scheduling.offer_bins import Bin
from scale_scheduler.state.domain import Shape
from scale_scheduler.state.placement_constraints import (
    Constraint,
    Operator,
    admits,
    spread_of,
)

Counts = Mapping[str, Mapping[str, int]]
"""A group's tasks per field, per value."""
_Checks = tuple[tuple[Constraint, str, bool, int, int], ...]
"""Per scoped constraint of a shape: the constraint, its field, whether it is ``GROUP_BY``, how
many values of the field the cluster has (constant for the pass), and the count a value must
stay under for ``UNIQUE`` (1) and ``MAX_PER`` (n), whose test ``find`` makes itself the way
``admits`` does (0: ``admits`` decides)."""


class ScopedSearch:
    """One pass's counts and searches. ``cursors`` is the pass's (shared with the plain
    placement): per shape, the first agent that may still take it; ``agent_parts`` gives each
    shape's ``Shape.fit`` as one object per value, the cursors' key."""

    def __init__(
        self,
        bins: Sequence[Bin],
        cursors: dict[int, int],
        agent_parts: AgentParts,
        placement: PlacementView | None,
    ) -> None:
        self.bins = bins
        self.cursors = cursors
        self.agent_parts = agent_parts
        self.placement = placement
        self.local: dict[str, dict[str, dict[str, int]]] = {}
        """Per group that placed tasks in this pass: the live counts copied, plus the pass's."""
        self.known: dict[str, int] = {}
        self.plans: dict[int, tuple[Shape, _Checks, bool]] = {}
        """Per shape (by ``id``, as the cursors): ``_plan``."""

    def counts_of(self, shape: Shape) -> Counts:
        """The shape's group's live tasks per field and value, this pass's placements included."""
        group = shape.group
        assert group is not None  # scoped constraints need a group (parse_constraints)
        local = self.local.get(group)
        if local is not None:
            return local
        return self.placement.group_counts(group) if self.placement is not None else _NO_GROUP

    def known_values(self, name: str) -> int:
        """Distinct values of the field in the cluster, and at least among this pass's offers."""
        known = self.known.get(name)
        if known is None:
            offered = {b.values.text(name) for b in self.bins} - {None}
            cluster = self.placement.known_values(name) if self.placement is not None else 0
            known = self.known[name] = max(cluster, len(offered))
        return known

    def count_placed(self, group: str, bin_: Bin, times: int = 1) -> None:
        """``times`` tasks of ``group`` placed on ``bin_``'s agent in this pass."""
        per_field = self.local.get(group)
        if per_field is None:
            base = self.placement.group_counts(group) if self.placement is not None else _NO_GROUP
            per_field = self.local[group] = {name: dict(counts) for name, counts in base.items()}
        for name, value in bin_.labels:
            per_value = per_field.get(name)
            if per_value is None:
                per_value = per_field[name] = {}
            per_value[value] = per_value.get(value, 0) + times

    def find(self, shape: Shape) -> Bin | None:
        """The first agent that fits the shape and admits one more task of its group. Two cursors
        move only past agents that can never take the shape in this pass: the one of the shape
        without its scoped constraints (shared with every shape that differs only in those:
        resources only shrink), and the shape's own, past agents its scoped constraints refused,
        unless a refusal may lift later in the pass (``_plan``)."""
        bins = self.bins
        count = len(bins)
        cursors = self.cursors
        key = id(shape)
        planned = self.plans.get(key)
        if planned is None:
            planned = self.plans[key] = self._plan(shape)
        fit, plan, final = planned
        fit_key = id(fit)
        shared = cursors.get(fit_key, 0)
        while shared < count and not bins[shared].fits(fit):
            shared += 1
        cursors[fit_key] = shared
        own = cursors.get(key, 0)
        cursor = own if own > shared else shared
        if cursor == count:
            cursors[key] = cursor
            return None
        counts = self.counts_of(shape)
        position = cursor
        found = None
        if len(plan) == 1 and plan[0][4]:
            # One UNIQUE or MAX_PER (the usual plan; final): admits' test, without its dispatch.
            _, name, _, _, bound = plan[0]
            values = counts.get(name, _NONE)
            while position < count:
                bin_ = bins[position]
                if position == shared or bin_.fits(fit):  # the shared cursor's agent fits
                    value = bin_.fields.get(name)
                    if value is not None and values.get(value, 0) < bound:
                        found = bin_
                        break
                if position == cursor:
                    cursor += 1
                position += 1
            cursors[key] = cursor
            return found
        # What each constraint reads, the same for every agent of this search.
        checks = []
        for constraint, name, group_by, known, bound in plan:
            values = counts.get(name, _NONE)
            spread = spread_of(values) if group_by else None
            checks.append((constraint, name, values, known, spread, bound))
        while position < count:
            bin_ = bins[position]
            if position == shared or bin_.fits(fit):  # the shared cursor's agent fits
                for constraint, name, values, known, spread, bound in checks:
                    if bound:  # UNIQUE, MAX_PER: as above
                        value = bin_.fields.get(name)
                        if value is None or values.get(value, 0) >= bound:
                            break
                    elif not admits(constraint, bin_.values, values, known, spread):
                        break
                else:
                    found = bin_
                    break
                if not final:
                    position += 1
                    continue
            if position == cursor:
                cursor += 1
            position += 1
        cursors[key] = cursor
        return found

    def _plan(self, shape: Shape) -> tuple[Shape, _Checks, bool]:
        """The shape's agent part, what each scoped constraint reads, and whether a refusal is
        final for the pass. Counts only grow during a pass: ``UNIQUE`` and ``MAX_PER`` never
        admit an agent they refused. ``GROUP_BY`` may (the least used value changes), and so may
        ``CLUSTER`` without a value (another shape of the group may place a task on a value the
        group did not use yet)."""
        checks = []
        final = True
        for c in shape.scoped:
            operator = c.operator
            bound = 0
            if operator is Operator.UNIQUE:
                bound = 1
            elif operator is Operator.MAX_PER:
                assert c.number is not None
                bound = c.number
            else:
                final = False
            checks.append(
                (c, c.field, operator is Operator.GROUP_BY, self.known_values(c.field), bound)
            )
        return self.agent_parts.of(shape), tuple(checks), final


class AgentParts:
    """Each shape's agent part (``Shape.fit``) as one shared object per value, so the pass's
    lookups by it match by identity: equal parts of different shapes are separate objects, and
    comparing them field by field cost more than the rest of a search (B3's constrained match)."""

    def __init__(self) -> None:
        self._by_value: dict[Shape, Shape] = {}
        self._by_shape: dict[int, tuple[Shape, Shape]] = {}
        """By the shape's ``id`` (a ``Shape`` hashes in Python), with the shape kept beside its
        part: the id cannot be reused while the entry holds it."""

    def of(self, shape: Shape) -> Shape:
        known = self._by_shape.get(id(shape))
        if known is not None and known[0] is shape:
            return known[1]
        fit = shape.fit
        part = self._by_value.setdefault(fit, fit)
        self._by_shape[id(shape)] = (shape, part)
        return part


_NONE: Mapping[str, int] = {}
_NO_GROUP: Counts = {}
