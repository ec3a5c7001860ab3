"""B6's retention feed, pure parts: the database's growth once pruning has caught up, and the
target row only that feed gets."""

from __future__ import annotations

from bench.b6_soak import growth_after_catch_up
from bench.targets import b6_targets


def samples(sizes: list[float], finished_step: float) -> list[dict[str, float]]:
    return [
        {"t": i * 0.25, "finished": (i + 1) * finished_step, "db_mb": size}
        for i, size in enumerate(sizes)
    ]


def test_a_file_that_stops_growing_once_pruning_caught_up() -> None:
    # Grows until 2 x 1,000 have finished, then pruning and vacuum keep it level (saw-toothed).
    sizes = [1.0, 2.0, 3.0, 4.0, 4.0, 3.8, 4.1, 3.9, 4.0, 3.9, 4.1, 4.0]
    growth = growth_after_catch_up(samples(sizes, 500), keep=1000)
    assert growth is not None
    assert abs(growth) < 0.05


def test_a_file_that_keeps_growing_is_measured_as_growing() -> None:
    sizes = [float(i) for i in range(1, 21)]  # no pruning: every task adds to the file
    growth = growth_after_catch_up(samples(sizes, 500), keep=1000)
    assert growth is not None
    assert growth > 0.3


def test_a_run_too_short_to_catch_up_is_not_judged() -> None:
    assert growth_after_catch_up(samples([1.0, 2.0, 3.0], 500), keep=1000) is None


def test_only_the_retention_feed_is_judged_on_the_database_growth() -> None:
    base = {
        "completed": True,
        "rss_peak_mb": 100.0,
        "longest_stall_s": 1.0,
        "ack_p99_s": 0.5,
        "last_vs_first": 1.0,
    }
    runs = {
        "1x": dict(base),
        "retention": {**base, "retain": 4000, "db_growth_after_catch_up": 0.2},
    }
    rows = b6_targets({"runs": runs})
    growth = [row for row in rows if "database growth" in row[0]]
    assert growth == [
        ("B6 retention: database growth once pruning caught up", "<= 5 %", "20 %", "**missed**")
    ]
