"""Marathon's constraint operators: parsing, one check per operator, and the group counts."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scale_scheduler.state.placement_constraints import (
    AgentValues,
    Constraint,
    ConstraintError,
    GroupCounts,
    Operator,
    admits,
    first_blocking,
    parse_constraint,
    parse_constraints,
)


def agent(host: str = "h1", **attributes: str) -> AgentValues:
    scalars = {}
    for name, text in attributes.items():
        with contextlib.suppress(ValueError):
            scalars[name] = float(text)
    return AgentValues(host, attributes, scalars)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (["rack"], "expected [field, OPERATOR]"),
        (["rack", "GROUP_BY", "3", "x"], "expected [field, OPERATOR]"),
        (["", "UNIQUE"], "the field is empty"),
        (["rack", "NEAR"], "unknown operator 'NEAR'"),
        (["rack", "unique"], "unknown operator 'unique'"),
        (["hostname", "UNIQUE", "x"], "UNIQUE takes no value"),
        (["rack", "GROUP_BY", "0"], "GROUP_BY needs a whole number >= 1"),
        (["rack", "GROUP_BY", "-2"], "GROUP_BY needs a whole number >= 1"),
        (["rack", "MAX_PER", "two"], "MAX_PER needs a whole number >= 1"),
        (["rack", "MAX_PER", "²"], "MAX_PER needs a whole number >= 1"),
        (["rack", "MAX_PER"], "MAX_PER needs a value"),
        (["zone", "LIKE", "us-(east"], "the regular expression does not compile"),
        (["zone", "UNLIKE"], "UNLIKE needs a value"),
        (["zone", "IS"], "IS needs a value"),
    ],
)
def test_bad_constraints_are_named(raw: list[str], message: str) -> None:
    with pytest.raises(ConstraintError) as caught:
        parse_constraint(raw)
    assert message in str(caught.value)
    assert str(raw) in str(caught.value)


def test_parsed_forms() -> None:
    assert parse_constraint(["rack", "GROUP_BY", "3"]).number == 3
    assert parse_constraint(["rack", "GROUP_BY"]).number == 1
    assert parse_constraint(["rack", "CLUSTER", ""]).value is None
    like = parse_constraint(["zone", "LIKE", "us-.*"])
    assert like.pattern is not None
    assert like.pattern.pattern == "us-.*"
    assert parse_constraint(["cores", "IS", "8"]).scalar == 8.0
    assert parse_constraint(["os", "IS", "nan"]).scalar is None
    assert str(parse_constraint(["rack", "GROUP_BY", "3"])) == "GROUP_BY rack 3"
    assert parse_constraint(["hostname", "UNIQUE"]).as_list() == ["hostname", "UNIQUE"]


def test_shorthand_means_is_and_scoped_ones_need_a_group() -> None:
    assert parse_constraints({"rack": "r1", "os": "linux"}, group=None) == (
        Constraint("os", Operator.IS, "linux"),
        Constraint("rack", Operator.IS, "r1"),
    )
    for raw in (
        ["hostname", "UNIQUE"],
        ["rack", "GROUP_BY", "2"],
        ["rack", "MAX_PER", "1"],
        ["rack", "CLUSTER"],
    ):
        with pytest.raises(ConstraintError, match="the task needs a group"):
            parse_constraints([raw], group=None)
        assert parse_constraints([raw], group="etl")
    assert parse_constraints([["rack", "CLUSTER", "r1"]], group=None)


def test_is_like_unlike() -> None:
    is_r1 = parse_constraint(["rack", "IS", "r1"])
    assert admits(is_r1, agent(rack="r1"))
    assert not admits(is_r1, agent(rack="r10"))
    assert not admits(is_r1, agent())
    cores = parse_constraint(["cores", "IS", "8"])
    assert admits(cores, agent(cores="8.0005"))
    assert not admits(cores, agent(cores="8.002"))
    assert not admits(parse_constraint(["os", "IS", "8"]), agent(os="eight"))
    host = parse_constraint(["hostname", "LIKE", "web-[0-9]+"])
    assert admits(host, agent("web-12"))
    assert not admits(host, agent("web-12.example"))  # the whole value must match
    unlike = parse_constraint(["zone", "UNLIKE", "eu-.*"])
    assert admits(unlike, agent(zone="us-1"))
    assert not admits(unlike, agent(zone="eu-2"))
    assert admits(unlike, agent())  # missing attribute: only UNLIKE matches
    assert not admits(parse_constraint(["zone", "LIKE", ".*"]), agent())


def test_scoped_operators_read_the_group_counts() -> None:
    unique = parse_constraint(["hostname", "UNIQUE"])
    assert admits(unique, agent("a"), {"b": 1})
    assert not admits(unique, agent("a"), {"a": 1})
    assert admits(unique, agent("a"), {"a": 0})
    cluster = parse_constraint(["rack", "CLUSTER"])
    assert admits(cluster, agent(rack="r2"), {})
    assert admits(cluster, agent(rack="r2"), {"r2": 3})
    assert not admits(cluster, agent(rack="r1"), {"r2": 3})
    fixed = parse_constraint(["rack", "CLUSTER", "r1"])
    assert admits(fixed, agent(rack="r1"), {"r2": 3})
    assert not admits(fixed, agent(rack="r2"), {})
    max_per = parse_constraint(["rack", "MAX_PER", "2"])
    assert admits(max_per, agent(rack="r1"), {"r1": 1})
    assert not admits(max_per, agent(rack="r1"), {"r1": 2})
    group_by = parse_constraint(["rack", "GROUP_BY", "3"])
    assert admits(group_by, agent(rack="r3"), {"r1": 1, "r2": 1})  # a new value: welcome
    assert not admits(group_by, agent(rack="r1"), {"r1": 1, "r2": 1})  # fewer than 3 in use
    assert admits(group_by, agent(rack="r1"), {"r1": 1, "r2": 1, "r3": 1})
    assert not admits(group_by, agent(rack="r1"), {"r1": 2, "r2": 1, "r3": 1})
    assert admits(group_by, agent(rack="r1"), {"r1": 1, "r2": 1, "r3": 1}, known_values=3)
    assert not admits(group_by, agent(rack="r1"), {"r1": 1, "r2": 1, "r3": 1}, known_values=4)
    for constraint in (parse_constraint(["rack", "UNIQUE"]), cluster, max_per, group_by):
        assert not admits(constraint, agent(), {})


def test_first_blocking_names_the_constraint() -> None:
    constraints = parse_constraints(
        [["zone", "LIKE", "us-.*"], ["hostname", "UNIQUE"]], group="etl"
    )
    counts = {"hostname": {"h1": 1}}
    assert first_blocking(constraints, agent("h1", zone="us-1"), counts) == constraints[1]
    assert first_blocking(constraints, agent("h2", zone="eu-1"), counts) == constraints[0]
    assert first_blocking(constraints, agent("h2", zone="us-1"), counts) is None


def test_group_counts_follow_launches_and_ends() -> None:
    counts = GroupCounts()
    a, b = agent("a", rack="r1"), agent("b", rack="r1")
    counts.add("etl", ("hostname", "rack"), a)
    counts.add("etl", ("hostname", "rack"), b)
    assert counts.of("etl") == {"hostname": {"a": 1, "b": 1}, "rack": {"r1": 2}}
    counts.add("etl", ("hostname", "rack", "zone"), a, -1)
    assert counts.of("etl") == {"hostname": {"b": 1}, "rack": {"r1": 1}}
    counts.add("etl", ("hostname", "rack"), b, -1)
    assert counts.of("etl") == {}
    assert len(counts) == 0  # nothing is kept for an empty group


def place_greedily(
    constraint: Constraint, agents: list[AgentValues], tasks: int
) -> list[AgentValues | None]:
    """Place tasks one by one on the first agent the constraint admits, as the matcher's
    fast path does, keeping the counts as it goes."""
    counts = GroupCounts()
    known = len({a.text(constraint.field) for a in agents} - {None})
    placed: list[AgentValues | None] = []
    for _ in range(tasks):
        chosen = next(
            (
                a
                for a in agents
                if admits(constraint, a, counts.of("g").get(constraint.field), known)
            ),
            None,
        )
        placed.append(chosen)
        if chosen is not None:
            counts.add("g", (constraint.field,), chosen)
    return placed


racks = st.lists(st.sampled_from(["r0", "r1", "r2", "r3", "r4"]), min_size=1, max_size=30)


@given(racks, st.integers(1, 6), st.integers(0, 40))
def test_max_per_and_unique_never_exceeded(agent_racks: list[str], n: int, tasks: int) -> None:
    agents = [agent(f"h{i}", rack=r) for i, r in enumerate(agent_racks)]
    for raw in (["rack", "MAX_PER", str(n)], ["rack", "UNIQUE"]):
        constraint = parse_constraint(raw)
        bound = n if constraint.operator is Operator.MAX_PER else 1
        placed = [a.attributes["rack"] for a in place_greedily(constraint, agents, tasks) if a]
        values = set(agent_racks)
        for value in values:
            assert placed.count(value) <= bound
        # Nothing that fits is left waiting: either all tasks are placed, or every value is full.
        if len(placed) < tasks:
            assert all(placed.count(v) == bound for v in values)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 60))
def test_group_by_spreads_evenly(values: int, n: int, tasks: int) -> None:
    agents = [agent(f"h{i}", rack=f"r{i % values}") for i in range(values * 3)]
    constraint = parse_constraint(["rack", "GROUP_BY", str(n)])
    placed = [a.attributes["rack"] for a in place_greedily(constraint, agents, tasks) if a]
    per_value = [placed.count(f"r{i}") for i in range(values)]
    if values >= n:
        assert len(placed) == tasks  # enough values: every task finds a place
        assert max(per_value) - min(per_value) <= 1
    else:
        assert len(placed) == min(tasks, values)  # too few values: one each, then wait
