"""The free-page margin a pruning pass keeps: what the writes between two passes took."""

from __future__ import annotations

from scale_scheduler.state.free_pages import ReuseMargin
from scale_scheduler.state.interface import PageUsage


def passes(margin: ReuseMargin, *spans: tuple[int, int]) -> list[int]:
    """Run passes that start and end with ``in_use`` pages; the margin each pass used."""
    kept = []
    for started, ended in spans:
        margin.pass_started(PageUsage(started, 0))
        kept.append(margin.keep)
        margin.pass_ended(PageUsage(ended, 0))
    return kept


def test_the_first_pass_keeps_nothing_then_the_demand_between_passes() -> None:
    # 100 pages in use; each interval's writes take 30 (or 50), each pass frees as many.
    assert passes(ReuseMargin(), (100, 70), (100, 70), (120, 70), (100, 70)) == [0, 30, 50, 50]


def test_the_margin_covers_the_largest_demand_of_the_window_then_forgets_it() -> None:
    margin = ReuseMargin(window=2)
    # Demands 300, 10, 10: the 300 is kept for two passes, then only the 10s are left.
    kept = passes(margin, (100, 100), (400, 100), (110, 100), (110, 100), (110, 100))
    assert kept == [0, 300, 300, 10, 10]


def test_pages_freed_without_writes_in_between_are_no_demand() -> None:
    # A pass that pruned (in use fell) followed by no writes: nothing to keep for.
    assert passes(ReuseMargin(), (1000, 200), (200, 200), (150, 150)) == [0, 0, 0]
