"""B6's CPU per task per tenth: work per task, which the shared machine's load does not move."""

from __future__ import annotations

import pytest

from bench.b6_soak import tenth_cpu


def test_cpu_per_task_is_measured_between_the_samples_that_cross_each_tenth() -> None:
    # 1,000 tasks; 100 finish per sample; the daemon spends 0.1 s per sample in the first half
    # and 0.2 s in the second: 1 ms, then 2 ms per task.
    samples = []
    cpu = 0.0
    for i in range(11):
        samples.append({"t": i * 0.25, "finished": 100.0 * i, "cpu": cpu})
        cpu += 0.1 if i < 5 else 0.2
    assert tenth_cpu(samples, 1000, "cpu") == pytest.approx([1.0] * 5 + [2.0] * 5)


def test_a_run_cut_short_has_fewer_tenths() -> None:
    samples = [{"t": i * 0.25, "finished": 100.0 * i, "cpu": 0.1 * i} for i in range(4)]
    assert len(tenth_cpu(samples, 1000, "cpu")) == 3
