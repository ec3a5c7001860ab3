"""Marathon's placement constraints: parsed once, checked per agent. Pure.

A constraint is ``[field, OPERATOR, value?]``; the field is ``hostname`` or an agent attribute.
Operators, as Marathon documents them:

- ``UNIQUE``: each task of the group on a distinct value of the field;
- ``CLUSTER v``: all on value ``v``; without ``v``, where the group's first task landed;
- ``GROUP_BY n``: spread evenly over the field's values: over all the values the cluster's
  agents have, and at least ``n`` (a value with no task of the group yet is always welcome; one
  that has tasks only once that many values are in use and it holds no more than the least used
  one);
- ``MAX_PER n``: at most ``n`` tasks of the group per value;
- ``LIKE re`` / ``UNLIKE re``: the value must (must not) match the regular expression, whole;
- ``IS v``: the value is ``v``; a scalar attribute compares within 0.001.

Where the agent lacks the attribute, only ``UNLIKE`` matches. ``UNIQUE``, ``CLUSTER`` without a
value, ``GROUP_BY`` and ``MAX_PER`` are scoped: they count the non-terminal tasks of the task's
``group`` per value of the field (``GroupCounts``), so a task using them must name its group.

The ``{"attr": "value"}`` shorthand of the task body means ``IS`` for each pair.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SCALAR_TOLERANCE = 0.001
HOSTNAME = "hostname"


class Operator(str, enum.Enum):
    UNIQUE = "UNIQUE"
    CLUSTER = "CLUSTER"
    GROUP_BY = "GROUP_BY"
    MAX_PER = "MAX_PER"
    LIKE = "LIKE"
    UNLIKE = "UNLIKE"
    IS = "IS"


SCOPED = frozenset({Operator.UNIQUE, Operator.GROUP_BY, Operator.MAX_PER})
"""Operators that always count the group's tasks (``CLUSTER`` does only without a value)."""


class ConstraintError(ValueError):
    """A constraint that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Constraint:
    field: str
    operator: Operator
    value: str | None = None
    number: int | None = dataclasses.field(default=None, compare=False)
    """``GROUP_BY``'s and ``MAX_PER``'s n."""
    pattern: re.Pattern[str] | None = dataclasses.field(default=None, compare=False)
    """``LIKE``'s and ``UNLIKE``'s expression, compiled once."""
    scalar: float | None = dataclasses.field(default=None, compare=False)
    """``IS``'s value as a number, when it is one."""

    @property
    def scoped(self) -> bool:
        return self.operator in SCOPED or (self.operator is Operator.CLUSTER and not self.value)

    def as_list(self) -> list[str]:
        """Marathon's JSON form."""
        return [self.field, self.operator.value] + ([self.value] if self.value is not None else [])

    def __str__(self) -> str:
        return " ".join(
            [self.operator.value, self.field] + ([self.value] if self.value is not None else [])
        )


def parse_constraint(raw: Sequence[str]) -> Constraint:
    """One constraint from Marathon's list form; ``ConstraintError`` names what is wrong."""
    shown = list(raw)
    if not 2 <= len(raw) <= 3 or not all(isinstance(part, str) for part in raw):
        raise ConstraintError(
            f"constraint {shown}: expected [field, OPERATOR] or [field, OPERATOR, value]"
        )
    name, op_name = raw[0], raw[1]
    value = raw[2] if len(raw) == 3 else None
    if not name:
        raise ConstraintError(f"constraint {shown}: the field is empty")
    try:
        operator = Operator(op_name)
    except ValueError:
        known = ", ".join(op.value for op in Operator)
        raise ConstraintError(
            f"constraint {shown}: unknown operator {op_name!r} (one of {known})"
        ) from None
    if operator is Operator.UNIQUE:
        if value is not None:
            raise ConstraintError(f"constraint {shown}: UNIQUE takes no value")
        return Constraint(name, operator)
    if operator is Operator.CLUSTER:
        return Constraint(name, operator, value or None)
    if operator is Operator.GROUP_BY and value is None:
        return Constraint(name, operator, None, number=1)
    if value is None:
        raise ConstraintError(f"constraint {shown}: {operator.value} needs a value")
    if operator in (Operator.GROUP_BY, Operator.MAX_PER):
        if not value.isascii() or not value.isdigit() or int(value) < 1:
            raise ConstraintError(f"constraint {shown}: {operator.value} needs a whole number >= 1")
        return Constraint(name, operator, value, number=int(value))
    if operator in (Operator.LIKE, Operator.UNLIKE):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ConstraintError(
                f"constraint {shown}: the regular expression does not compile: {exc}"
            ) from None
        return Constraint(name, operator, value, pattern=pattern)
    return Constraint(name, operator, value, scalar=_number(value))


def parse_constraints(
    raw: Sequence[Sequence[str]] | Mapping[str, str], *, group: str | None
) -> tuple[Constraint, ...]:
    """A task's constraints, from the list form or the ``{"attr": "value"}`` shorthand (IS)."""
    if isinstance(raw, Mapping):
        parsed = tuple(
            Constraint(name, Operator.IS, value, scalar=_number(value))
            for name, value in sorted(raw.items())
        )
    else:
        parsed = tuple(parse_constraint(item) for item in raw)
    if group is None:
        for constraint in parsed:
            if constraint.scoped:
                raise ConstraintError(
                    f"constraint {constraint.as_list()}: {constraint.operator.value} counts the "
                    "tasks of a group: the task needs a group"
                )
    return parsed


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


@dataclass(frozen=True, slots=True)
class AgentValues:
    """What constraints read from one agent: its hostname, its attributes as text, and the
    scalar attributes as numbers."""

    hostname: str
    attributes: Mapping[str, str]
    scalars: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def text(self, name: str) -> str | None:
        return self.hostname if name == HOSTNAME else self.attributes.get(name)


def admits(
    constraint: Constraint,
    agent: AgentValues,
    counts: Mapping[str, int] | None = None,
    known_values: int = 0,
    spread: tuple[int, int] | None = None,
) -> bool:
    """Whether one more task of the group may go to ``agent``. ``counts``: the group's
    non-terminal tasks per value of the constraint's field (scoped operators only);
    ``known_values``: how many distinct values of the field the cluster's agents have (GROUP_BY
    spreads over all of them, as Marathon does, and over at least its n); ``spread``:
    ``spread_of(counts)`` when the caller has it already (GROUP_BY, asked for many agents)."""
    value = agent.text(constraint.field)
    operator = constraint.operator
    if value is None:
        return operator is Operator.UNLIKE
    if operator is Operator.IS:
        if value == constraint.value:
            return True
        scalar = agent.scalars.get(constraint.field)
        return (
            scalar is not None
            and constraint.scalar is not None
            and abs(scalar - constraint.scalar) <= SCALAR_TOLERANCE
        )
    if operator is Operator.LIKE:
        assert constraint.pattern is not None
        return constraint.pattern.fullmatch(value) is not None
    if operator is Operator.UNLIKE:
        assert constraint.pattern is not None
        return constraint.pattern.fullmatch(value) is None
    if operator is Operator.CLUSTER and constraint.value:
        return value == constraint.value
    if counts is None:
        counts = _NO_COUNTS
    # The matcher asks once per candidate agent: only GROUP_BY reads more than one count.
    if operator is Operator.UNIQUE:
        return counts.get(value, 0) <= 0
    if operator is Operator.MAX_PER:
        assert constraint.number is not None
        return counts.get(value, 0) < constraint.number
    if operator is Operator.CLUSTER:
        return counts.get(value, 0) > 0 or not any(n > 0 for n in counts.values())
    # GROUP_BY
    assert constraint.number is not None
    here = counts.get(value, 0)
    if here <= 0:
        return True
    in_use, least = spread if spread is not None else spread_of(counts)
    return in_use >= max(constraint.number, known_values) and here == least


def spread_of(counts: Mapping[str, int]) -> tuple[int, int]:
    """How many values are in use, and the least count among them (GROUP_BY's view)."""
    used = [n for n in counts.values() if n > 0]
    return len(used), min(used, default=0)


_NO_COUNTS: Mapping[str, int] = {}


def first_blocking(
    constraints: Iterable[Constraint],
    agent: AgentValues,
    counts_of: Mapping[str, Mapping[str, int]] | None = None,
    known_values: Mapping[str, int] | None = None,
) -> Constraint | None:
    """The first constraint that keeps the task off ``agent`` (None: all admit it).
    ``counts_of``: the group's counts per field; ``known_values``: distinct values per field."""
    counts_of = counts_of or {}
    known_values = known_values or {}
    for constraint in constraints:
        name = constraint.field
        if not admits(constraint, agent, counts_of.get(name), known_values.get(name, 0)):
            return constraint
    return None


@dataclass(slots=True)
class GroupCounts:
    """Non-terminal tasks per group, per field, per value: kept as tasks launch and end, never
    recounted per offer. Only the fields some scoped constraint of the group reads are kept."""

    _counts: dict[str, dict[str, dict[str, int]]] = dataclasses.field(default_factory=dict)

    def of(self, group: str) -> Mapping[str, Mapping[str, int]]:
        return self._counts.get(group, {})

    def add(self, group: str, fields: Iterable[str], agent: AgentValues, sign: int = 1) -> None:
        """Count a task of ``group`` placed on ``agent`` (``sign=-1``: it ended)."""
        per_field = self._counts.setdefault(group, {})
        for name in fields:
            value = agent.text(name)
            if value is None:
                continue
            values = per_field.setdefault(name, {})
            count = values.get(value, 0) + sign
            if count > 0:
                values[value] = count
            else:
                values.pop(value, None)
                if not values:
                    del per_field[name]
        if not per_field:
            del self._counts[group]

    def __len__(self) -> int:
        return len(self._counts)
