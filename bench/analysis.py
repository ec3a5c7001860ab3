"""Why each missed target is missed, by how much, and where the time goes.

The reasons are written here once; every figure they quote (rates, ratios, profile rows) comes
from the run being reported, so the text and the tables cannot disagree about numbers. A target
that is met gets no paragraph.
"""

from __future__ import annotations

from typing import Any

from bench.common import summary
from bench.targets import scaled_figures


def _median(values: list[float]) -> float:
    return summary(values)["median"]


def _judged(samples: list[tuple[Any, Any]], *, higher: bool) -> tuple[float, float]:
    """(the figure a target is judged on, the raw one): medians over the rounds; the judged one
    is scaled to the reference machine (``bench.targets``), or raw without calibration."""
    clean = [(float(raw), bracket) for raw, bracket in samples if isinstance(raw, (int, float))]
    raw = _median([r for r, _ in clean])
    scaled = scaled_figures(list(clean), higher=higher)
    return (_median(scaled) if scaled else raw), raw


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:,.{digits}f}"


def _top(profile: dict[str, Any], count: int = 4) -> str:
    rows = profile.get("own", [])[:count]
    return "; ".join(f"`{r['function']}` {r['share'] * 100:.0f} %" for r in rows) or "no profile"


def _rate(row: dict[str, Any], variant: str) -> float | None:
    value = row.get(variant, {}).get("offers_per_s")
    return float(value) if isinstance(value, (int, float)) else None


def _ratio(rounds: list[dict[str, Any]], variant: str, peer: str) -> float:
    """Median over rounds of a variant's rate divided by its peer's in the same round (the
    figure the targets table shows)."""
    values = []
    for row in rounds:
        mine = _rate(row, variant)
        other = _rate(row, peer) if peer != "decode_limit" else float(row["decode_limit"])
        if mine is not None and other:
            values.append(mine / other)
    return _median(values)


def _b1(data: dict[str, Any]) -> list[str]:
    rounds = data["rounds"]
    lazy = _median([row["decode_lazy"] for row in rounds if "decode_lazy" in row])
    variants = ("native_paused", "native_unpaused")
    vs_bare = min(_ratio(rounds, v, "pymesos_bare") for v in variants)
    vs_limit = min(_ratio(rounds, v, "decode_limit") for v in variants)
    slowest = min(
        _median([r for row in rounds if (r := _rate(row, v)) is not None]) for v in variants
    )
    lines = ["### B1", ""]
    if vs_bare == vs_bare and vs_bare < 5:
        lines.append(
            f"- **5 x bare pymesos: {vs_bare:.2f} x** (the slower variant, median of the rounds' "
            "ratios). The bare pymesos scheduler does little besides `json.loads` of each "
            f"{data['record_bytes']:,}-byte record and one blocking DECLINE per event. The daemon "
            f"spends, per offer, {1e6 / slowest:.2f} us (median): its decode alone takes "
            f"{1e6 / lazy:.2f} us (resources left raw), the rest is reading the stream, node "
            "bookkeeping, the DECLINE and the loop. Profile (unpaused): "
            f"{_top(data.get('profile_unpaused', {}))}."
        )
    if vs_limit == vs_limit and vs_limit < 0.5:
        lines.append(
            f"- **Decode limit: {vs_limit * 100:.0f} %** (target 50 %, the slower variant). Per "
            f"offer the daemon spends {1e6 / slowest:.2f} us."
        )
    return [*lines, ""] if len(lines) > 2 else []


def _b2(data: dict[str, Any]) -> list[str]:
    info = [row["info"] for row in data["rounds"] if "info" in row]
    first, first_raw = _judged(
        [(x.get("first_pass_rate"), x.get("calibration")) for x in info], higher=True
    )
    overall, overall_raw = _judged(
        [(x.get("accept_rate"), x.get("calibration")) for x in info], higher=True
    )
    tasks = info[0].get("tasks", 0) if info else 0
    agents = info[0].get("agents", 0) if info else 0
    fit = min(tasks, agents * 32)
    sim_us = _median([x["simulator_us_per_task"] for x in info if x.get("simulator_us_per_task")])
    lines = ["### B2", ""]
    if first == first and first < 10_000:
        sim = (
            f" (the simulator spent {sim_us:.0f} us of CPU per task over the run, on the other "
            "core)"
            if sim_us == sim_us
            else ""
        )
        lines.append(
            f"- **First launching pass: {_num(first)} tasks/s** scaled to the reference machine "
            f"({_num(first_raw)} raw; target 10,000). That pass gets "
            "every agent's offer at once; its time covers the match, one intent commit of all "
            "its tasks (SQLite `executemany`, fsync), a TaskInfo per task, one ACCEPT per agent "
            "(at most `mesos.max_call_connections` in flight), and waiting for the simulator to "
            f"validate and launch each ACCEPT's tasks before it answers 202{sim}. The profile "
            "below shows the daemon's side."
        )
    if overall == overall and overall < 10_000:
        profile = _top(data.get("profile_run", {}).get("profile", {}), 5)
        lines.append(
            f"- **All {tasks:,} tasks: {_num(overall)} tasks/s from unpause** scaled to the "
            f"reference machine ({_num(overall_raw)} raw). {agents:,} agents "
            f"of 32 cpus hold {fit:,} such tasks; the other {tasks - fit:,} wait for the first "
            "to finish (1 s RUNNING), for their updates to be acknowledged (one ACKNOWLEDGE "
            "call per update: the v1 API has no batch acknowledgement) and for the simulator's "
            f"next allocation cycle. Profile of the daemon: {profile}."
        )
    return [*lines, ""] if len(lines) > 2 else []


def _b3(data: dict[str, Any]) -> list[str]:
    match = data.get("match", {})
    if not match:
        return []
    frozen = match["gc_frozen"]
    default = match["gc_default"]
    p99, p99_raw = _judged([(frozen["p99_ms"], match.get("calibration"))], higher=False)
    lines = ["### B3", ""]
    if p99 > 10:
        per_task = frozen["p50_ms"] * 1000 / max(1, frozen["placed_per_match"])
        lines.append(
            f"- **Match p99 {p99:.1f} ms** scaled to the reference machine ({p99_raw:.1f} ms raw;"
            f" target 10 ms; p50 {frozen['p50_ms']:.1f} ms raw). One event of 100 recorded "
            "offers of 32 cpus places "
            f"{frozen['placed_per_match']:,} tasks of 1 cpu: about {per_task:.1f} us per task "
            "placed at the median, with runs of equal tasks on one agent placed at once (one "
            "count per bin, then one small tuple per task). The queue's length does not enter "
            "(the index is walked, not scanned). Without the start-up freeze the same calls "
            f"took p99 {default['p99_ms']:.1f} ms ({default['full_collections']} full "
            f"collections inside timed calls, {default['full_collection_s'] * 1000:.0f} ms)."
        )
    return [*lines, ""] if len(lines) > 2 else []


def _b4(data: dict[str, Any]) -> list[str]:
    rounds = data["rounds"]
    ratio = _median([r["ratio"] for r in rounds if r.get("ratio")])
    p99, p99_raw = _judged(
        [(r["daemon"].get("p99_ms"), r["daemon"].get("calibration")) for r in rounds],
        higher=False,
    )
    offers = _median(
        [
            r["daemon"]["offers_per_s_meanwhile"]
            for r in rounds
            if r["daemon"].get("offers_per_s_meanwhile")
        ]
    )
    lines = ["### B4", ""]
    if ratio < 0.5 or p99 > 20:
        lines.append(
            f"- **{ratio * 100:.0f} % of the bare endpoint's requests/s, p99 {p99:.1f} ms** "
            f"(scaled to the reference machine; {p99_raw:.1f} ms raw; targets 50 %, 20 ms). "
            "The daemon's one loop also reads B1's unbounded offer "
            f"stream meanwhile ({_num(offers)} offers/s answered): the stream reader takes one "
            "record per turn of the loop and up to two extra turns while requests keep coming "
            "(`daemon/mesos/loop_share.py`); each request also pays for the access-log event, the "
            "latency histogram, authentication and the error middleware, which the bare "
            "endpoint does not."
        )
    return [*lines, ""] if len(lines) > 2 else []


def explain(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, fn in (("B1", _b1), ("B2", _b2), ("B3", _b3), ("B4", _b4)):
        data = results.get(name)
        if not data or "error" in data or ("rounds" not in data and name != "B3"):
            continue
        try:
            lines += fn(data)
        except (KeyError, TypeError, ZeroDivisionError, IndexError) as exc:
            lines += [f"### {name}", "", f"(no analysis: {exc!r})", ""]
    if not lines:
        return []
    return ["## Missed targets: by how much and why", "", *lines]
