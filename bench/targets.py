"""The targets table: each target's goal, its raw figure, and the figure it is judged on.

A ratio to a peer measured in the same round (B1, B4's share of the bare endpoint) is judged as
measured: both sides ran on the same machine minutes apart. An absolute figure (B2's and B3's
rates, B3's restart and match times, B4's p99) is scaled round by round to the reference machine
by the calibration sample taken around it (``bench.calibration``), and the verdict is on the
median of the scaled figures. Memory is not scaled: a slower machine does not use more of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.b7_usage import FIGURES, LIMIT, ratios
from bench.calibration import bracket_rate, scale_duration, scale_rate
from bench.common import num, summary

NOT_SCALED_RATIO = "as measured (ratio within a round)"
NOT_SCALED_MEMORY = "as measured (memory is not scaled)"


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    raw: str
    calibration: str
    """Median of the rounds' typed decode rates (offers/s), or a dash for unscaled figures."""
    judged: str
    """The figure the verdict is on: scaled to the reference machine, or as measured."""
    verdict: str


def _verdict(value: float | None, goal: float, higher: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    ok = value >= goal if higher else value <= goal
    return "met" if ok else "**missed**"


def _dig(row: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        row = row.get(key) if isinstance(row, dict) else None
    return row


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def measured(
    name: str,
    goal: float,
    unit: str,
    values: list[float],
    *,
    higher: bool = True,
    digits: int = 0,
    scale: float = 1.0,
    note: str = NOT_SCALED_RATIO,
) -> Target:
    """A target judged on its median as measured (``scale`` only changes the display: 100 %)."""
    median = summary(values)["median"] if values else None
    shown = f"{num(median * scale if median is not None else None, digits)} {unit}"
    sign = ">=" if higher else "<="
    return Target(
        name,
        f"{sign} {goal * scale:g} {unit}",
        shown,
        "—",
        note,
        _verdict(median, goal, higher),
    )


def scaled_figures(samples: list[tuple[float | None, Any]], *, higher: bool) -> list[float]:
    """Each round's raw figure scaled by its calibration bracket (rounds without one left out):
    a throughput (``higher`` is better) with ``scale_rate``, a duration with ``scale_duration``."""
    scale: Callable[[float, float], float] = scale_rate if higher else scale_duration
    out = []
    for raw, bracket in samples:
        rate = bracket_rate(bracket)
        if raw is not None and rate is not None:
            out.append(scale(raw, rate))
    return out


def calibrated(
    name: str,
    goal: float,
    unit: str,
    samples: list[tuple[float | None, Any]],
    *,
    higher: bool = True,
    digits: int = 0,
) -> Target:
    """An absolute target: ``samples`` are (raw figure, calibration bracket) per round.

    Throughputs (``higher``) scale up on a slower machine, durations (not ``higher``) down; the
    verdict is on the median of the scaled figures. Without any calibration (results written
    before it existed) the verdict falls back to the raw figure and says so.
    """
    raws = [raw for raw, _ in samples if raw is not None]
    rates = [r for raw, b in samples if raw is not None and (r := bracket_rate(b)) is not None]
    scaled = scaled_figures(samples, higher=higher)
    raw_median = summary(raws)["median"] if raws else None
    sign = ">=" if higher else "<="
    goal_text = f"{sign} {num(goal)} {unit}"
    raw_text = f"{num(raw_median, digits)} {unit}"
    if not scaled:
        verdict = _verdict(raw_median, goal, higher)
        if raw_median is not None:
            verdict += " (raw: no calibration)"
        return Target(name, goal_text, raw_text, "n/a", "n/a", verdict)
    judged = summary(scaled)["median"]
    return Target(
        name,
        goal_text,
        raw_text,
        num(summary(rates)["median"]),
        f"{num(judged, digits)} {unit}",
        _verdict(judged, goal, higher),
    )


def _ratios(
    rounds: list[dict[str, Any]], top: tuple[str, ...], bottom: tuple[str, ...]
) -> list[float]:
    out = []
    for row in rounds:
        a, b = _number(_dig(row, top)), _number(_dig(row, bottom))
        if a is not None and b:
            out.append(a / b)
    return out


def _b3_rows(b3: dict[str, Any], suffix: str, tasks: Any = None) -> list[Target]:
    """B3's process and match targets of one backend (``suffix`` names it in each row)."""
    rows: list[Target] = []
    tasks = b3.get("tasks", tasks)
    if "enqueue" in b3:
        bracket = b3.get("calibration")
        rows.append(
            calibrated(
                f"B3 durable enqueue{suffix}",
                20_000,
                "tasks/s",
                [(_number(b3["enqueue"].get("rate")), bracket)],
            )
        )
        rows.append(
            measured(
                f"B3 RSS with {num(tasks)} queued{suffix}",
                600,
                "MB",
                [v for v in [_number(b3.get("rss_mb"))] if v is not None],
                higher=False,
                note=NOT_SCALED_MEMORY,
            )
        )
        rows.append(
            calibrated(
                f"B3 restart with {num(tasks)} queued{suffix}",
                10,
                "s",
                [(_number(b3.get("restart_s")), bracket)],
                higher=False,
                digits=2,
            )
        )
    elif suffix and "error" in b3:
        rows.append(Target(f"B3{suffix}", "as on SQLite", "n/a", "—", "—", "not measured"))
    match = b3.get("match", {})
    if match:
        # The daemon freezes its start-up state (daemon/service/service.py): that is the figure.
        rows.append(
            calibrated(
                f"B3 match p99, 100 offers, {num(match['queued_loaded'])} queued (as the daemon"
                f" runs: gc frozen after load){suffix}",
                10,
                "ms",
                [(_number(match["gc_frozen"]["p99_ms"]), match.get("calibration"))],
                higher=False,
                digits=2,
            )
        )
    return rows


def targets(results: dict[str, Any]) -> list[Target]:
    rows: list[Target] = []
    b1 = results.get("B1", {})
    if "rounds" in b1:
        r = b1["rounds"]
        for variant in ("native_paused", "native_unpaused"):
            label = variant.replace("_", " ")
            rows.append(
                measured(
                    f"B1 {label} vs bare pymesos",
                    5.0,
                    "x",
                    _ratios(r, (variant, "offers_per_s"), ("pymesos_bare", "offers_per_s")),
                    digits=2,
                )
            )
            rows.append(
                measured(
                    f"B1 {label} vs decode limit",
                    0.5,
                    "%",
                    _ratios(r, (variant, "offers_per_s"), ("decode_limit",)),
                    digits=1,
                    scale=100.0,
                )
            )
    b2 = results.get("B2", {})
    if "rounds" in b2:
        for key, label in (
            ("first_pass_rate", "first pass, all agents"),
            ("accept_rate", "all tasks, from unpause"),
        ):
            for variant, suffix in (("info", ""), ("postgresql", ", PostgreSQL")):
                runs = [row[variant] for row in b2["rounds"] if isinstance(row.get(variant), dict)]
                if not runs:
                    continue  # a run from before PostgreSQL was measured
                rows.append(
                    calibrated(
                        f"B2 launch rate to ACCEPT ({label}){suffix}",
                        10_000,
                        "tasks/s",
                        [(_number(run.get(key)), run.get("calibration")) for run in runs],
                    )
                )
    b3 = results.get("B3", {})
    sqlite_rows = _b3_rows(b3, "")
    postgresql_rows: list[Target] = []
    if isinstance(b3.get("postgresql"), dict):
        postgresql_rows = _b3_rows(b3["postgresql"], ", PostgreSQL", tasks=b3.get("tasks"))
    if len(sqlite_rows) == len(postgresql_rows):  # each SQLite row beside its PostgreSQL row
        rows += [row for pair in zip(sqlite_rows, postgresql_rows, strict=True) for row in pair]
    else:
        rows += sqlite_rows + postgresql_rows
    constrained = b3.get("match_constrained", {})
    if constrained:
        rows.append(
            calibrated(
                f"B3 match p99, 100 offers, {num(constrained['queued'])} queued, a tenth "
                f"constrained (UNIQUE, GROUP_BY, MAX_PER) over {constrained['groups']} groups",
                10,
                "ms",
                [(_number(constrained["p99_ms"]), constrained.get("calibration"))],
                higher=False,
                digits=2,
            )
        )
    b4 = results.get("B4", {})
    if "rounds" in b4:
        r = b4["rounds"]
        rows.append(
            measured(
                "B4 /status/ req/s vs bare aiohttp",
                0.5,
                "%",
                [x["ratio"] for x in r if x.get("ratio")],
                digits=1,
                scale=100.0,
            )
        )
        rows.append(
            calibrated(
                "B4 /status/ p99 under the offer stream",
                20,
                "ms",
                [
                    (_number(_dig(x, ("daemon", "p99_ms"))), _dig(x, ("daemon", "calibration")))
                    for x in r
                ],
                higher=False,
                digits=2,
            )
        )
    if "kills" in results.get("B5", {}):
        rows += [
            Target(name, goal, shown, "—", "as measured (hand-over times are not scaled)", verdict)
            for name, goal, shown, verdict in b5_targets(results["B5"])
        ]
    if "rounds" in results.get("B7", {}):
        rows += b7_targets(results["B7"])
    if "runs" in results.get("B6", {}):
        rows += [
            Target(name, goal, shown, "—", "as measured (no calibration in B6)", verdict)
            for name, goal, shown, verdict in b6_targets(results["B6"])
        ]
    return rows


B5_KILLS = 20
"""Failovers by kill -9 the target asks for."""
B5_KILL_P50 = 2.0
B5_KILL_MAX = 5.0
B5_STOP_OVER_LEASE = 3.0


def b5_targets(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """B5's rows: (target, goal, measured, verdict)."""

    def row(label: str, goal: str, value: Any, limit: float, higher: bool = False) -> tuple:
        number = _number(value)
        if number is None or math.isnan(number):
            return (label, goal, "n/a", "not measured")
        shown = f"{num(number, 2)} s" if not higher else num(number)
        return (label, goal, shown, _verdict(number, limit, higher))

    stop_limit = float(data["lease_seconds"]) + B5_STOP_OVER_LEASE
    return [
        row("B5 failovers by kill -9", f">= {B5_KILLS}", data.get("kills"), B5_KILLS, True),
        row(
            "B5 kill -9 to a standby's SUBSCRIBED, p50",
            f"<= {B5_KILL_P50:g} s",
            data.get("kill_p50_s"),
            B5_KILL_P50,
        ),
        row(
            "B5 kill -9 to a standby's SUBSCRIBED, max",
            f"<= {B5_KILL_MAX:g} s",
            data.get("kill_max_s"),
            B5_KILL_MAX,
        ),
        row(
            "B5 SIGSTOP to a standby's SUBSCRIBED, max",
            f"<= {stop_limit:g} s (lease + {B5_STOP_OVER_LEASE:g} s)",
            data.get("stop_max_s"),
            stop_limit,
        ),
        (
            "B5 one framework id throughout",
            "yes",
            "yes" if data.get("one_framework") else "no",
            "met" if data.get("one_framework") else "**missed**",
        ),
    ]


B6_TARGETS = (
    ("RSS at any time", "<= 300 MB", "rss_peak_mb", 300.0, False, 0, " MB"),
    ("longest stall without a finished task", "<= 2 s", "longest_stall_s", 2.0, False, 1, " s"),
    ("acknowledgement p99", "<= 1 s", "ack_p99_s", 1.0, False, 3, " s"),
    ("end-to-end rate, last tenth vs first", ">= 90 %", "last_vs_first", 0.9, True, 2, ""),
)


RETENTION_TARGETS = (
    (
        "database growth once pruning caught up",
        "<= 5 %",
        "db_growth_after_catch_up",
        0.05,
        False,
        0,
        "",
    ),
)
"""For the feed that keeps a share of its tasks (``retain``): the file stops growing."""


def b6_targets(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for feed, run in data.get("runs", {}).items():
        targets = B6_TARGETS + (RETENTION_TARGETS if run.get("retain") else ())
        for label, goal, key, limit, higher, digits, unit in targets:
            value = run.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                verdict, shown = "not measured", "n/a"
            else:
                ok = value >= limit if higher else value <= limit
                verdict = "met" if ok else "**missed**"
                if key in ("last_vs_first", "db_growth_after_catch_up"):
                    shown = f"{num(value * 100, 0)} %"
                else:
                    shown = f"{num(value, digits)}{unit}"
            if not run.get("completed"):
                verdict = "**missed** (the feed did not complete)"
            rows.append((f"B6 {feed}: {label}", goal, shown, verdict))
    return rows


def b7_targets(data: dict[str, Any]) -> list[Target]:
    """The poller on against off, per round: a throughput keeps >= 95 %, a p99 grows <= 5 %."""
    rows = []
    for variant, figures in FIGURES.items():
        for key, label in figures:
            lower_better = key.startswith("p99")
            rows.append(
                measured(
                    f"B7 {label}, usage poller on vs off",
                    1 + LIMIT if lower_better else 1 - LIMIT,
                    "%",
                    ratios(data, variant, key),
                    higher=not lower_better,
                    digits=1,
                    scale=100.0,
                )
            )
    return rows
