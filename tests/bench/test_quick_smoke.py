"""Smoke test: ``python -m bench --quick`` runs every scenario end to end and writes a report.

No timing is asserted (the machine is shared): only that each scenario produced its figures,
that no scenario failed, that every absolute figure has its calibration bracket, that B2's bare
launcher peer launched every task, and that the report shows every section and target row, each
absolute target with its raw figure, the calibration and the scaled figure it is judged on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pg_cluster import unavailable_reason

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_quick_mode_writes_a_complete_report(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-profile", "--output", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=460,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.with_suffix(".json").read_text())
    for name in ("B1", "B2", "B3", "B4", "B6"):
        assert "error" not in results[name], results[name]
    b1 = results["B1"]["rounds"][0]
    for variant in ("native_paused", "native_unpaused"):
        assert b1[variant]["offers_per_s"] > 0, b1[variant]
    assert b1["decode_limit"] > 0
    b2_round = results["B2"]["rounds"][0]
    b2 = b2_round["info"]
    assert b2["intent_s"] is not None, b2
    assert b2["first_pass_tasks"] > 0, b2
    on_postgresql = b2_round["postgresql"]
    assert "error" not in on_postgresql, on_postgresql
    assert on_postgresql["backend"] == "postgresql"
    assert on_postgresql["first_pass_tasks"] > 0, on_postgresql
    peer = b2_round["bare_launcher"]
    assert "error" not in peer, peer
    assert peer["launched"] == peer["tasks"] == b2["tasks"], peer
    assert peer["first_pass_tasks"] > 0, peer
    assert peer["calls_failed"] == 0, peer
    b3 = results["B3"]
    brackets = [
        b2_round["info"]["calibration"],
        b2_round["warning"]["calibration"],
        on_postgresql["calibration"],
        peer["calibration"],
        b3["calibration"],
        b3["match"]["calibration"],
        b3["postgresql"]["calibration"],
        b3["postgresql"]["match"]["calibration"],
        b3["match_constrained"]["calibration"],
        results["B4"]["rounds"][0]["daemon"]["calibration"],
    ]
    for bracket in brackets:
        assert bracket["before"] > 0, bracket
        assert bracket["after"] > 0, bracket
        assert bracket["rate"] == (bracket["before"] + bracket["after"]) / 2, bracket
    assert b3["queue_depth"] == b3["tasks"]
    assert b3["match"]["queued_loaded"] == b3["tasks"]
    assert "error" not in b3["postgresql"], b3["postgresql"]
    assert b3["postgresql"]["queue_depth"] == b3["tasks"]
    assert b3["postgresql"]["match"]["queued_loaded"] == b3["tasks"]
    assert b3["postgresql"]["restart_s"] > 0
    constrained = b3["match_constrained"]
    for layout in ("batched", "interleaved"):
        assert constrained[layout]["constrained"] == b3["tasks"] // 10, constrained
        assert constrained[layout]["placed_per_match"] > 0, constrained
    assert b3["restart_s"] > 0
    b4 = results["B4"]["rounds"][0]
    assert b4["daemon"]["requests"] > 0
    assert b4["bare"]["requests"] > 0
    for feed in ("1x", "2x"):
        soak = results["B6"]["runs"][feed]
        assert soak["finished"] > 0, soak
        assert soak["samples"], soak
        assert soak["in_flight_max"] <= 20_000, soak  # scheduler.max_in_flight's default
    retention = results["B6"]["runs"]["retention"]
    assert retention["retain"] == results["B6"]["tasks"] // 5
    assert retention["pruned"] > 0, retention
    assert all("db_mb" in sample for sample in retention["samples"])
    b7 = results["B7"]["rounds"][0]
    for variant in ("b1_paused", "b1_unpaused", "b4"):
        # The agents were asked with the poller on, never with it off.
        assert b7[variant]["on"]["agent_calls"] > 0, b7[variant]
        assert b7[variant]["off"]["agent_calls"] == 0, b7[variant]
    assert results["B7"]["round_cost"]["median_cpu_seconds"] > 0, results["B7"]
    b5 = results["B5"]
    assert "error" not in b5, b5
    if unavailable_reason() is None:  # B5 needs a PostgreSQL server
        assert b5["kills"] == 4, b5
        assert b5["stops"] == 1, b5
        assert b5["one_framework"] is True, b5
        assert all(r["handover_s"] > 0 for r in b5["rounds"]), b5
    text = report.read_text()
    for heading in (
        "## Targets",
        "## B1 ",
        "## B2 ",
        "## B3 ",
        "## B4 ",
        "## B5 ",
        "## B6 ",
        "## B7 ",
        "## Machine",
    ):
        assert heading in text
    assert "Failed:" not in text
    assert "| B6 retention: database growth once pruning caught up |" in text
    targets_rows = text.split("## Targets", 1)[1].split("\n## ", 1)[0].splitlines()
    assert sum(line.startswith("| B1 ") for line in targets_rows) == 4
    assert sum(line.startswith("| B7 ") for line in targets_rows) == 5
    assert "## Calibration" in text
    assert "| daemon / bare launcher |" in text
    header = "| target | goal | raw (median) | calibration: typed decode, offers/s "
    assert header + "| judged: scaled to the reference machine | verdict |" in text
    targets_table = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    calibrated = [
        line
        for line in targets_table.splitlines()
        if line.startswith(
            ("| B2 launch", "| B3 durable", "| B3 restart", "| B3 match", "| B4 /status/ p99")
        )
    ]
    # B2's two and B3's enqueue, restart and plain match, each on SQLite and on PostgreSQL;
    # B3's match with a tenth constrained; B4's p99.
    assert len(calibrated) == 12, calibrated
    assert sum(line.split("|")[1].strip().endswith(", PostgreSQL") for line in calibrated) == 5
    for line in calibrated:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        _name, _goal, raw, calibration, judged, verdict = cells
        assert re.fullmatch(r"[\d,]+", calibration), line
        assert re.fullmatch(r"[\d,.]+ (tasks/s|s|ms)", raw), line
        assert re.fullmatch(r"[\d,.]+ (tasks/s|s|ms)", judged), line
        assert judged.split()[1] == raw.split()[1], line
        assert verdict in ("met", "**missed**"), line
