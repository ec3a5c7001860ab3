"""``python -m bench``: run B1-B7 and write the report (``bench/RESULTS.md`` by default).

``--quick`` runs every scenario once at small sizes in about a minute (CI runs it to report,
never to assert) and writes ``bench/out/RESULTS-quick.md``. ``--only B1,B3`` picks scenarios;
written to an existing report, it replaces only those scenarios' sections and target rows.
The raw figures go to a JSON file beside the report. Child processes' logs, databases and
profiles stay under ``bench/out/work-<mode>/`` for inspection (``bench/out/`` is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import b1_offers, b2_launch, b3_million, b4_api, b5_failover, b6_soak, b7_usage
from bench.common import Settings
from bench.environment import describe
from bench.history_at_size import history_section
from bench.offer_stream import load_offers
from bench.procs import ROOT
from bench.report import render

SCENARIOS = {
    "B1": b1_offers.run,
    "B2": b2_launch.run,
    "B3": b3_million.run,
    "B4": b4_api.run,
    "B5": b5_failover.run,
    "B6": b6_soak.run,
    "B7": b7_usage.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (~1 min)")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. B1,B4")
    parser.add_argument("--rounds", type=int, default=0, help="repetitions (default 5; quick 1)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile runs")
    parser.add_argument(
        "--usage-interval",
        type=float,
        default=None,
        help="B1 and B4 with the usage poller at this interval over the recorded agents",
    )
    parser.add_argument("--output", default="", help="report path (default per mode)")
    parser.add_argument(
        "--report-from",
        default="",
        help="render the report again from a run's raw JSON (no scenario is run)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_from:
        return rerender(Path(args.report_from), Path(args.output) if args.output else None)
    settings = Settings.quick_mode() if args.quick else Settings.full()
    if args.rounds:
        settings.rounds = args.rounds
    if args.no_profile:
        settings.profile = False
    settings.usage_interval = args.usage_interval
    if args.only:
        wanted = tuple(name.strip().upper() for name in args.only.split(",") if name.strip())
        unknown = [name for name in wanted if name not in SCENARIOS]
        if unknown:
            print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        settings.only = wanted
    mode = "quick" if settings.quick else "full"
    settings.out = ROOT / "bench" / "out"
    settings.work = settings.out / f"work-{mode}"
    shutil.rmtree(settings.work, ignore_errors=True)
    settings.work.mkdir(parents=True)
    if args.output:
        output = Path(args.output)
    else:
        output = ROOT / "bench" / ("RESULTS.md" if not settings.quick else "out/RESULTS-quick.md")
    load_offers(settings.offers_path)
    results: dict[str, Any] = {
        "mode": mode,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "environment": describe(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    began = time.monotonic()
    for name in settings.only:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        step = time.monotonic()
        try:
            results[name] = SCENARIOS[name](settings)
        except Exception as exc:  # report what ran; a broken scenario is itself a finding
            results[name] = {"error": repr(exc)[:1000]}
        results[name]["seconds"] = time.monotonic() - step
        print(f"bench: {name} done in {results[name]['seconds']:.0f}s", file=sys.stderr)
    results["seconds"] = time.monotonic() - began
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    output.parent.mkdir(parents=True, exist_ok=True)
    raw = output.with_suffix(".json")
    if output.parent == ROOT / "bench":
        raw = settings.out / f"results-{mode}.json"
    raw.write_text(json.dumps(results, indent=1, default=str))
    if args.only and output.exists():
        # The spliced sections keep the header of the run that wrote the report: each one
        # names the run that measured it under its heading instead.
        for name in settings.only:
            results[name]["run"] = run_of(results)
        report = splice(output.read_text(), render(results), settings.only)
    else:
        report = render(results)
        kept = history_section(output.read_text()) if output.exists() else ""
        report += f"\n{kept}" if kept else ""
    output.write_text(report)
    print(f"bench: wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 0


def run_of(results: dict[str, Any]) -> dict[str, Any]:
    """What a report says of the run that measured a section."""
    return {key: results[key] for key in ("command", "mode", "started", "environment")} | {
        "load_after": [round(x, 2) for x in os.getloadavg()]
    }


def rerender(raw: Path, output: Path | None) -> int:
    """Render a saved run again (into its report, or ``output``); a partial run is spliced."""
    results = json.loads(raw.read_text())
    if output is None:
        output = (
            ROOT / "bench" / ("RESULTS.md" if results["mode"] == "full" else "out/RESULTS-quick.md")
        )
    report = render(results)
    only = tuple(results["settings"].get("only", ()))
    scenarios = tuple(name for name in SCENARIOS if name in results)
    if output.exists() and set(scenarios) != set(SCENARIOS):
        report = splice(output.read_text(), report, scenarios or only)
    output.write_text(report)
    print(f"bench: wrote {output}")
    return 0


def _sections(text: str) -> dict[str, str]:
    """``## Bn ...`` sections of a report by scenario name."""
    out: dict[str, str] = {}
    parts = text.split("\n## ")
    for part in parts[1:]:
        name = part.split(" ", 1)[0]
        if name.startswith("B") and name[1:].isdigit():
            out[name] = "## " + part.rstrip("\n") + "\n"
    return out


def splice(existing: str, fresh: str, names: tuple[str, ...]) -> str:
    """The existing report with the sections and target rows of ``names`` taken from ``fresh``
    (a partial run does not wipe the other scenarios' figures)."""
    new_sections = _sections(fresh)
    old_sections = _sections(existing)
    text = existing
    for name in names:
        section = new_sections.get(name)
        if section is None:
            continue
        if name in old_sections:
            text = text.replace(old_sections[name], section)
        else:
            text = text.rstrip("\n") + "\n\n" + section
    prefixes = tuple(f"| {name} " for name in names)
    fresh_lines = fresh.split("\n")
    lo, hi = _targets_table(fresh_lines)
    fresh_rows = [line for line in fresh_lines[lo:hi] if line.startswith(prefixes)]
    lines = text.split("\n")
    lo, hi = _targets_table(lines)
    if hi > lo:
        table = [line for line in lines[lo:hi] if not line.startswith(prefixes)]
        lines[lo:hi] = table + fresh_rows
    return "\n".join(lines)


def _targets_table(lines: list[str]) -> tuple[int, int]:
    """[start, end) of the rows of the report's Targets table (empty if none)."""
    if "## Targets" not in lines:
        return 0, 0
    start = lines.index("## Targets") + 1
    while start < len(lines) and not lines[start].startswith("| ---"):
        start += 1
    start += 1
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end
