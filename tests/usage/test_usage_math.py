"""The usage arithmetic (``daemon/mesos/usage_math.py``), table-driven, no I/O."""

from __future__ import annotations

import pytest

from scale_scheduler.daemon.mesos.usage_math import (
    MIB,
    ContainerReading,
    ContainerUsage,
    Sample,
    Usage,
    container_usage,
    cpu_rate,
    sample_of,
    total,
    work_out_round,
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cpus_user_time_secs": 3.0, "cpus_system_time_secs": 1.0}, Sample(10.0, 4.0, None, None)),
        ({"cpus_user_time_secs": 3.0}, Sample(10.0, 3.0, None, None)),
        ({"cpus_system_time_secs": 0.5}, Sample(10.0, 0.5, None, None)),
        ({}, Sample(10.0, None, None, None)),
        # RSS wins over the total; the total stands in when RSS is absent.
        ({"mem_rss_bytes": 5.0, "mem_total_bytes": 9.0}, Sample(10.0, None, 5.0, None)),
        ({"mem_total_bytes": 9.0}, Sample(10.0, None, 9.0, None)),
        ({"mem_rss_bytes": 0.0, "mem_total_bytes": 9.0}, Sample(10.0, None, 0.0, None)),
        ({"disk_used_bytes": 7.0}, Sample(10.0, None, None, 7.0)),
    ],
)
def test_sample_of_statistics(fields: dict[str, float], expected: Sample) -> None:
    assert sample_of(10.0, **fields) == expected


@pytest.mark.parametrize(
    ("previous", "current", "rate"),
    [
        (Sample(100.0, 10.0, None, None), Sample(115.0, 25.0, None, None), 1.0),
        (Sample(100.0, 10.0, None, None), Sample(110.0, 12.5, None, None), 0.25),
        (Sample(100.0, 10.0, None, None), Sample(110.0, 10.0, None, None), 0.0),
        (None, Sample(110.0, 10.0, None, None), None),  # the first sample: no rate yet
        (Sample(100.0, None, None, None), Sample(110.0, 10.0, None, None), None),
        (Sample(100.0, 10.0, None, None), Sample(110.0, None, None, None), None),
        (Sample(100.0, 10.0, None, None), Sample(100.0, 11.0, None, None), None),  # no time
        (Sample(110.0, 10.0, None, None), Sample(100.0, 11.0, None, None), None),  # backwards
        (Sample(100.0, 50.0, None, None), Sample(110.0, 2.0, None, None), None),  # replaced
    ],
)
def test_cpu_rate(previous: Sample | None, current: Sample, rate: float | None) -> None:
    assert cpu_rate(previous, current) == (None if rate is None else pytest.approx(rate))


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (
            Sample(0.0, 0.0, None, None),
            Sample(2.0, 1.0, 256 * MIB, 10 * MIB),
            ContainerUsage(0.5, 256.0, 10.0),
        ),
        (None, Sample(2.0, 1.0, 1.5 * MIB, None), ContainerUsage(None, 1.5, None)),
        (None, Sample(2.0, None, None, None), ContainerUsage(None, None, None)),
    ],
)
def test_container_usage(
    previous: Sample | None, current: Sample, expected: ContainerUsage
) -> None:
    assert container_usage(previous, current) == expected


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        ([], Usage(0.0, 0.0, 0.0)),
        ([ContainerUsage(None, None, None)], Usage(0.0, 0.0, 0.0)),
        (
            [ContainerUsage(0.5, 100.0, None), ContainerUsage(None, 28.0, 4.0)],
            Usage(0.5, 128.0, 4.0),
        ),
        ([ContainerUsage(0.1, 0.0, 0.0)] * 3, Usage(0.3, 0.0, 0.0)),  # float dust rounded away
        ([Usage(1.0, 2.0, 3.0), Usage(0.25, 0.5, 0.0)], Usage(1.25, 2.5, 3.0)),
        ([ContainerUsage(0.0004, 0.0, 0.0)], Usage(0.0, 0.0, 0.0)),
    ],
)
def test_total(usages: list[ContainerUsage | Usage], expected: Usage) -> None:
    assert total(usages) == expected


def reading(key: str, ts: float, cpu: float, mem_mib: float, fw: str = "fw") -> ContainerReading:
    return ContainerReading(key, fw, key, key, Sample(ts, cpu, mem_mib * MIB, None))


def test_a_round_sums_answering_agents_and_names_the_silent_ones() -> None:
    first = work_out_round(
        {
            "a": [reading("c1", 0.0, 0.0, 100.0), reading("c2", 0.0, 5.0, 50.0, fw="other")],
            "b": [reading("c3", 0.0, 0.0, 10.0)],
            "c": None,
        },
        {},
    )
    # First samples: memory is known, CPUs are not yet.
    assert {h: a.node for h, a in first.agents.items()} == {
        "a": Usage(0.0, 150.0, 0.0),
        "b": Usage(0.0, 10.0, 0.0),
    }
    assert first.cluster == Usage(0.0, 160.0, 0.0)
    assert first.unknown == ["c"]
    second = work_out_round(
        {
            "a": [reading("c1", 10.0, 5.0, 100.0), reading("c2", 10.0, 15.0, 60.0, fw="other")],
            "b": None,  # silent now: its samples are kept, its usage is not counted
            "c": [reading("c4", 10.0, 1.0, 1.0)],
        },
        first.samples,
    )
    assert {h: a.node for h, a in second.agents.items()} == {
        "a": Usage(1.5, 160.0, 0.0),
        "c": Usage(0.0, 1.0, 0.0),
    }
    assert second.cluster == Usage(1.5, 161.0, 0.0)
    assert second.unknown == ["b"]
    assert "c3" in second.samples["b"]
    [(_, usage)] = [w for w in second.agents["a"].containers if w[0].key == "c1"]
    assert usage == ContainerUsage(0.5, 100.0, None)
    # b answers again: its rate spans the gap from its last sample; c1 is gone from a.
    third = work_out_round(
        {"a": [], "b": [reading("c3", 20.0, 4.0, 10.0)], "c": []}, second.samples
    )
    assert third.agents["b"].node == Usage(0.2, 10.0, 0.0)
    assert third.cluster == Usage(0.2, 10.0, 0.0)
    assert third.samples["a"] == {}
    assert third.samples["c"] == {}


def test_agents_that_are_no_longer_polled_are_forgotten() -> None:
    first = work_out_round({"a": [reading("c1", 0.0, 0.0, 1.0)]}, {})
    assert work_out_round({"b": None}, first.samples).samples == {}


def test_a_silent_agent_never_seen_before_has_no_samples() -> None:
    assert work_out_round({"new": None}, {}).samples == {}
