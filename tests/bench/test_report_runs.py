"""A report assembled from several runs says under a section's heading which run measured it."""

from __future__ import annotations

from bench.report import _own_run

RUN = {
    "command": "python -m bench --only B4",
    "mode": "full",
    "started": "2026-12-07 02:53:54 UTC",
    "environment": {"commit": "a945f2a", "dirty": False, "load_before": [0.5, 0.9, 1.4]},
    "load_after": [1.1, 1.0, 1.4],
}
SECTION = ["## B4 API under load", "", "`GET /status/`, 32 keep-alive connections.", ""]


def test_a_section_from_another_run_names_it_under_its_heading() -> None:
    lines = _own_run({"rounds": [], "run": RUN}, SECTION)
    assert lines[:2] == SECTION[:2]
    assert lines[2] == (
        "Measured by `python -m bench --only B4` on 2026-12-07 02:53:54 UTC, commit a945f2a; "
        "load average before [0.5, 0.9, 1.4], after [1.1, 1.0, 1.4]."
    )
    assert lines[3:] == ["", *SECTION[2:]]


def test_a_section_of_the_reports_own_run_is_unchanged() -> None:
    assert _own_run({"rounds": []}, SECTION) == SECTION
    assert _own_run(None, SECTION) == SECTION
