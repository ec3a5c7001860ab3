"""Smoke test: ``python -m bench --quick`` runs every scenario end to end and writes a report.

No timing is asserted (the machine is shared): only that each scenario produced its figures,
that no scenario failed, and that the report shows every section and target row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_mode_writes_a_complete_report(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-profile", "--output", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.with_suffix(".json").read_text())
    for name in ("B1", "B2", "B3", "B4", "B6"):
        assert "error" not in results[name], results[name]
    b1 = results["B1"]["rounds"][0]
    for variant in ("native_paused", "native_unpaused"):
        assert b1[variant]["offers_per_s"] > 0, b1[variant]
    assert b1["decode_limit"] > 0
    b2 = results["B2"]["rounds"][0]["info"]
    assert b2["intent_s"] is not None, b2
    assert b2["first_pass_tasks"] > 0, b2
    b3 = results["B3"]
    assert b3["queue_depth"] == b3["tasks"]
    assert b3["match"]["queued_loaded"] == b3["tasks"]
    assert b3["restart_s"] > 0
    b4 = results["B4"]["rounds"][0]
    assert b4["daemon"]["requests"] > 0
    assert b4["bare"]["requests"] > 0
    for feed in ("1x", "2x"):
        soak = results["B6"]["runs"][feed]
        assert soak["finished"] > 0, soak
        assert soak["samples"], soak
        assert soak["in_flight_max"] <= 20_000, soak  # scheduler.max_in_flight's default
    text = report.read_text()
    for heading in ("## Targets", "## B1 ", "## B2 ", "## B3 ", "## B4 ", "## B6 ", "## Machine"):
        assert heading in text
    assert "Failed:" not in text
    assert text.count("| B1 ") == 4
