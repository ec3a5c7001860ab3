"""Render a run's raw figures as Markdown: environment, commands, targets, tables, profiles.

Every number in the report comes from the results of the same run; the explanations under a
missed target are written here once and quote the run's own profile rows and ratios.
"""

from __future__ import annotations

import math
from typing import Any

from bench.analysis import explain
from bench.common import summary
from bench.decode_limit import LAZY_DECODER

B1_LABELS = {
    "native_paused": "daemon, native driver, paused (declines all)",
    "native_unpaused": "daemon, native driver, unpaused, empty queue",
    "pymesos_daemon": "daemon, pymesos driver (Python 3.10), paused",
    "pymesos_bare": "bare pymesos scheduler (Python 3.10), declines only",
}


def num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float)):
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def mmm(values: list[float], digits: int = 0) -> str:
    s = summary(values)
    if not s["n"]:
        return "n/a"
    if s["n"] == 1:
        return num(s["median"], digits)
    return f"{num(s['min'], digits)} / **{num(s['median'], digits)}** / {num(s['max'], digits)}"


def _vals(rounds: list[dict[str, Any]], *path: str) -> list[float]:
    out = []
    for row in rounds:
        value: Any = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            out.append(float(value))
    return out


def _ratios(
    rounds: list[dict[str, Any]], top: tuple[str, ...], bottom: tuple[str, ...]
) -> list[float]:
    out = []
    for row in rounds:
        a, b = _vals([row], *top), _vals([row], *bottom)
        if a and b and b[0]:
            out.append(a[0] / b[0])
    return out


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, goal, measured median, verdict) rows."""
    rows: list[tuple[str, str, str, str]] = []

    def verdict(value: float | None, goal: float, higher: bool = True) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "not measured"
        ok = value >= goal if higher else value <= goal
        return "met" if ok else "**missed**"

    b1 = results.get("B1", {})
    if "rounds" in b1:
        r = b1["rounds"]
        for variant in ("native_paused", "native_unpaused"):
            ratio = summary(_ratios(r, (variant, "offers_per_s"), ("pymesos_bare", "offers_per_s")))
            rows.append(
                (
                    f"B1 {variant.replace('_', ' ')} vs bare pymesos",
                    ">= 5.0 x",
                    f"{num(ratio['median'], 2)} x",
                    verdict(ratio["median"], 5.0),
                )
            )
            share = summary(_ratios(r, (variant, "offers_per_s"), ("decode_limit",)))
            rows.append(
                (
                    f"B1 {variant.replace('_', ' ')} vs decode limit",
                    ">= 50 %",
                    f"{num(share['median'] * 100, 1)} %",
                    verdict(share["median"], 0.5),
                )
            )
    b2 = results.get("B2", {})
    if "rounds" in b2:
        first = summary(_vals(b2["rounds"], "info", "first_pass_rate"))
        rows.append(
            (
                "B2 launch rate to ACCEPT (first pass, all agents)",
                ">= 10,000 tasks/s",
                f"{num(first['median'])} tasks/s",
                verdict(first["median"], 10_000),
            )
        )
        overall = summary(_vals(b2["rounds"], "info", "accept_rate"))
        rows.append(
            (
                "B2 launch rate to ACCEPT (all tasks, from unpause)",
                ">= 10,000 tasks/s",
                f"{num(overall['median'])} tasks/s",
                verdict(overall["median"], 10_000),
            )
        )
    b3 = results.get("B3", {})
    if "enqueue" in b3:
        rows.append(
            (
                "B3 durable enqueue",
                ">= 20,000 tasks/s",
                f"{num(b3['enqueue']['rate'])} tasks/s",
                verdict(b3["enqueue"]["rate"], 20_000),
            )
        )
        rows.append(
            (
                f"B3 RSS with {num(b3['tasks'])} queued",
                "<= 600 MB",
                f"{num(b3.get('rss_mb'))} MB",
                verdict(b3.get("rss_mb"), 600, higher=False),
            )
        )
        rows.append(
            (
                f"B3 restart with {num(b3['tasks'])} queued",
                "<= 10 s",
                f"{num(b3.get('restart_s'), 2)} s",
                verdict(b3.get("restart_s"), 10, higher=False),
            )
        )
    match = b3.get("match", {})
    if match:
        # The daemon freezes its start-up state (daemon/service.py): that is the figure.
        p99 = match["gc_frozen"]["p99_ms"]
        rows.append(
            (
                f"B3 match p99, 100 offers, {num(match['queued_loaded'])} queued (as the daemon"
                " runs: gc frozen after load)",
                "<= 10 ms",
                f"{num(p99, 2)} ms",
                verdict(p99, 10, higher=False),
            )
        )
    b4 = results.get("B4", {})
    if "rounds" in b4:
        ratio = summary([r["ratio"] for r in b4["rounds"] if r.get("ratio")])
        rows.append(
            (
                "B4 /status/ req/s vs bare aiohttp",
                ">= 50 %",
                f"{num(ratio['median'] * 100, 1)} %",
                verdict(ratio["median"], 0.5),
            )
        )
        p99 = summary(_vals(b4["rounds"], "daemon", "p99_ms"))
        rows.append(
            (
                "B4 /status/ p99 under the offer stream",
                "<= 20 ms",
                f"{num(p99['median'], 2)} ms",
                verdict(p99["median"], 20, higher=False),
            )
        )
    if "runs" in results.get("B6", {}):
        rows += b6_targets(results["B6"])
    return rows


def _profile_table(profile: dict[str, Any], title: str, rows: int = 12) -> list[str]:
    if not profile or "own" not in profile:
        return [f"{title}: no profile ({profile.get('profile_error', 'not run')})", ""]
    out = [
        f"{title} (cProfile, {num(profile['total_s'], 2)} s profiled; full listing in "
        f"`bench/out/work-*/.../{profile['text']}`):",
        "",
        "| own time | calls | function |",
        "| ---: | ---: | --- |",
    ]
    for row in profile["own"][:rows]:
        out.append(
            f"| {num(row['share'] * 100, 1)} % | {num(row['calls'])} | `{row['function']}` |"
        )
    out.append("")
    return out


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    settings = results["settings"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{results['command'].strip()}` ({results['mode']} mode) on "
        f"{results['started']}, in {num(results['seconds'])} s. Do not edit: rerun `make bench`.",
        "Figures are min / **median** / max over the rounds; ratios are taken within a round "
        "(peers measured minutes apart on a shared machine are not compared).",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {env['cpu']}, {env['cores']} cores, {num(env['memory_gib'], 1)} GiB; "
        f"{env['os']}; load average before the run {env['load_before']}, after it "
        f"{results.get('load_after', 'n/a')} (1, 5, 15 min; the machine is shared with other "
        "engineers' test runs, so compare min and max before reading much into a median)",
        f"- Python {env['python']} (daemon, fake master, load generators); SQLite {env['sqlite']}; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "- Python 3.10 venv: "
        + (
            ", ".join(f"{k} {v}" for k, v in env["python310"].items())
            if env["python310"]
            else "missing (pymesos rows skipped; `make install310`)"
        ),
        f"- Commit {env['commit']}{' with local changes' if env['dirty'] else ''}",
        "- Daemon logging: JSON lines at info (the production default, `logging.format: json`, "
        "`logging.level: info`), stdout to a file; B2 is run at warning too to price it.",
        "",
        "## Commands",
        "",
        "```",
        "make bench          # python -m bench            -> bench/RESULTS.md",
        "make bench-quick    # python -m bench --quick    -> bench/out/RESULTS-quick.md",
        "python -m bench --only B1,B4 --rounds 3 --no-profile",
        "```",
        "",
        "Processes per scenario (each its own OS process, loopback only):",
        "",
        "- daemon: `python -m scale_scheduler.daemon.cli run --config <generated yaml>` "
        "(the `scale-scheduler run` entry point); pymesos variant with `.venv310/bin/python`",
        "- fake master: `python -m bench.fake_master --offers bench/out/offers.json [--mode idle]`",
        "- bare pymesos: `.venv310/bin/python -m bench.pymesos_bare HOST:PORT`",
        "- simulator (B2): `python -m scale_scheduler.simulator --port 0 --agents "
        f"{settings['b2_agents']} --cpus 32 --mem 131072 --disk 1000000 --attributes "
        f"'rack:r{{i%40}};zone:z{{i%3}}' --task-duration {settings['b2_task_duration']}`",
        "- load generators: `python -m bench.enqueue URL --tasks N`, "
        "`python -m bench.loadgen URL/status/ --concurrency 32 --seconds S`",
        "",
        f"Sizes: {settings['rounds']} round(s); B1/B4 windows {settings['b1_seconds']} s / "
        f"{settings['b4_seconds']} s after {settings['b1_warmup']} s warm-up; B2 "
        f"{num(settings['b2_tasks'])} tasks on {num(settings['b2_agents'])} agents; B3 "
        f"{num(settings['b3_tasks'])} tasks, {num(settings['b3_match_repeats'])} timed matches.",
        "",
        "## Targets",
        "",
        "| target | goal | measured (median) | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for target, goal, measured, verdict in targets(results):
        lines.append(f"| {target} | {goal} | {measured} | {verdict} |")
    lines.append("")
    lines += _b1(results.get("B1"))
    lines += _b2(results.get("B2"))
    lines += _b3(results.get("B3"))
    lines += _b4(results.get("B4"))
    if "B6" in results:
        lines += b6_section(results["B6"], results)
    lines += explain(results)
    return "\n".join(lines).rstrip() + "\n"


def _error(name: str, data: dict[str, Any] | None) -> list[str] | None:
    if data is None:
        return [f"## {name}", "", "Not run.", ""]
    if "error" in data:
        return [f"## {name}", "", f"Failed: `{data['error']}`", ""]
    return None


def _b1(data: dict[str, Any] | None) -> list[str]:
    failed = _error("B1 offer throughput", data)
    if failed:
        return failed
    assert data is not None
    r = data["rounds"]
    lines = [
        "## B1 offer throughput",
        "",
        f"OFFERS events of {data['offers_per_event']} recorded offers ({num(data['record_bytes'])} "
        "bytes each) served as fast as the client reads; offers answered (DECLINE/ACCEPT) per "
        "second at the fake master. CPU is the share of one core over the window.",
        "",
        "| client | offers/s | CPU client | CPU master | / bare pymesos | / decode limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant, label in B1_LABELS.items():
        errors = [row[variant].get("error") or row[variant].get("skipped") for row in r]
        if all(errors):
            lines.append(f"| {label} | {errors[0]} | | | | |")
            continue
        limit = _ratios(r, (variant, "offers_per_s"), ("decode_limit",))
        lines.append(
            f"| {label} | {mmm(_vals(r, variant, 'offers_per_s'))} "
            f"| {mmm(_vals(r, variant, 'cpu_percent', 'client'))} % "
            f"| {mmm(_vals(r, variant, 'cpu_percent', 'master'))} % "
            f"| {mmm(_ratios(r, (variant, 'offers_per_s'), ('pymesos_bare', 'offers_per_s')), 2)} "
            f"| {mmm([x * 100 for x in limit], 1)} % |"
        )
    names = list(r[0]["decode"]) if r else []
    for name in names:
        lines.append(
            f"| decode only: {name} | {mmm([row['decode'][name] for row in r])} | 100 % | | | |"
        )
    lazy = [row["decode_lazy"] for row in r if "decode_lazy" in row]
    if lazy:
        lines.append(f"| decode only: {LAZY_DECODER} (not a limit) | {mmm(lazy)} | 100 % | | | |")
    lines.append("")
    lines.append(
        "The decode limit is the fastest rate of the decoders that parse every value (same bytes, "
        "this process, no I/O). The daemon itself leaves each offer's resources, attributes and "
        "url as raw JSON until something reads them (most offers are declined unread), which is "
        "why it can answer more offers per second than a full decode alone could deliver; its "
        "own decode is timed on the last row."
    )
    lines.append("")
    for key, title in (
        ("profile_unpaused", "Where the native daemon's time goes, unpaused"),
        ("profile_paused", "Where the native daemon's time goes, paused"),
    ):
        if key in data:
            under = data[key].get("rate_under_profiler")
            lines += _profile_table(data[key], f"{title}; {num(under)} offers/s under the profiler")
    return lines


def _b2(data: dict[str, Any] | None) -> list[str]:
    failed = _error("B2 launch rate", data)
    if failed:
        return failed
    assert data is not None
    r = data["rounds"]
    first = r[0]["info"] if r else {}
    lines = [
        "## B2 launch rate",
        "",
        f"{num(first.get('tasks'))} queued tasks (1 cpu, 128 MiB) on {num(first.get('agents'))} "
        "simulated agents of 32 cpus; the daemon unpaused at t=0. 'intent' = every launch intent "
        "committed (queue depth 0); 'ACCEPT' = the pass that launched the last task ended (every "
        "ACCEPT answered 202); 'RUNNING' = every task RUNNING or FINISHED in the daemon's table. "
        "CPU per task: each process's CPU from unpause to 'RUNNING', per task queued.",
        "",
        "| logging | intent (s) | ACCEPT (s) | RUNNING (s) | first pass: tasks in s = tasks/s "
        "| pipeline tasks/s | enqueue tasks/s | CPU us/task daemon / simulator |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for level in ("info", "warning"):
        rows = [row[level] for row in r if level in row]
        if not rows:
            continue
        if all("error" in x for x in rows):
            lines.append(f"| json, {level} | {rows[0]['error']} | | | | | | |")
            continue
        running = mmm(_vals(rows, "running_s"), 1)
        if not _vals(rows, "running_s"):
            reached = _vals(rows, "ran_by_deadline")
            running = f"not within {num(rows[0].get('deadline_s'))} s ({mmm(reached)} ran)"
        first_pass = "n/a (no pass log at warning)"
        if _vals(rows, "first_pass_rate"):
            first_pass = (
                f"{mmm(_vals(rows, 'first_pass_tasks'))} in {mmm(_vals(rows, 'first_pass_s'), 2)}"
                f" = {mmm(_vals(rows, 'first_pass_rate'))}"
            )
        lines.append(
            f"| json, {level} | {mmm(_vals(rows, 'intent_s'), 2)} "
            f"| {mmm(_vals(rows, 'accepted_s'), 2) if level == 'info' else 'n/a'} | {running} "
            f"| {first_pass} | {mmm(_vals(rows, 'pipeline_rate'))} "
            f"| {mmm(_vals(rows, 'enqueue', 'rate'))} "
            f"| {mmm(_vals(rows, 'daemon_us_per_task'))} / "
            f"{mmm(_vals(rows, 'simulator_us_per_task'))} |"
        )
    lines.append("")
    if "profile_run" in data:
        run = data["profile_run"]
        lines += _profile_table(
            run.get("profile", {}),
            f"Where the daemon's time goes in B2 (JSON at info; first pass "
            f"{num(run.get('first_pass_rate'))} tasks/s under the profiler)",
        )
    return lines


def _b3(data: dict[str, Any] | None) -> list[str]:
    failed = _error("B3 a million queued", data)
    if failed:
        return failed
    assert data is not None
    enqueue = data.get("enqueue", {})
    lines = [
        "## B3 a million queued",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| tasks enqueued (batches of {num(enqueue.get('batch'))}, "
        f"{num(enqueue.get('concurrency'))} in flight) | {num(enqueue.get('tasks'))} |",
        f"| durable enqueue rate | {num(enqueue.get('rate'))} tasks/s "
        f"({num(enqueue.get('seconds'), 1)} s; slowest batch "
        f"{num(enqueue.get('slowest_batch_s'), 2)} s) |",
        f"| queue depth reported afterwards | {num(data.get('queue_depth'))} |",
        f"| daemon RSS (peak) with them queued | {num(data.get('rss_mb'))} MB "
        f"({num(data.get('hwm_mb'))} MB) |",
        f"| SIGTERM to exit | {num(data.get('stop_s'), 2)} s (exit {data.get('stop_exit_code')}) |",
        f"| restart until serving and subscribed | {num(data.get('restart_s'), 2)} s |",
        f"| RSS (peak) after restart | {num(data.get('rss_after_restart_mb'))} MB "
        f"({num(data.get('hwm_after_restart_mb'))} MB) |",
    ]
    match = data.get("match", {})
    if match:
        lines.append(
            f"| start-up load in-process (`TaskTracker.load`) | {num(match['load_s'], 2)} s "
            f"({num(match['queued_loaded'])} queued) |"
        )
        for key, label in (("gc_default", "default GC"), ("gc_frozen", "after gc.freeze()")):
            m = match[key]
            lines.append(
                f"| match, {match['offers']} offers, {label}: p50 / p99 / max | "
                f"{num(m['p50_ms'], 2)} / {num(m['p99_ms'], 2)} / {num(m['max_ms'], 2)} ms "
                f"({num(m['placed_per_match'])} placed; {m['full_collections']} full collections "
                f"= {num(m['full_collection_s'] * 1000, 1)} ms) |"
            )
    lines.append("")
    return lines


def _b4(data: dict[str, Any] | None) -> list[str]:
    failed = _error("B4 API under load", data)
    if failed:
        return failed
    assert data is not None
    r = data["rounds"]
    lines = [
        "## B4 API under load",
        "",
        f"`GET /status/`, {data['concurrency']} keep-alive connections, closed loop.",
        "",
        "| server | req/s | p50 ms | p99 ms | max ms | errors | offers/s meanwhile |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("daemon", "daemon under B1's stream"), ("bare", "bare aiohttp")):
        lines.append(
            f"| {label} | {mmm(_vals(r, key, 'rps'))} | {mmm(_vals(r, key, 'p50_ms'), 2)} "
            f"| {mmm(_vals(r, key, 'p99_ms'), 2)} | {mmm(_vals(r, key, 'max_ms'), 1)} "
            f"| {mmm(_vals(r, key, 'errors'))} "
            f"| {mmm(_vals(r, key, 'offers_per_s_meanwhile')) if key == 'daemon' else ''} |"
        )
    lines.append(
        f"| daemon / bare | {mmm([x['ratio'] * 100 for x in r if x.get('ratio')], 1)} % | | | | | |"
    )
    lines.append("")
    return lines


# --- B6 ----------------------------------------------------------------------------------------

B6_TARGETS = (
    ("RSS at any time", "<= 300 MB", "rss_peak_mb", 300.0, False, 0, " MB"),
    ("longest stall without a finished task", "<= 2 s", "longest_stall_s", 2.0, False, 1, " s"),
    ("acknowledgement p99", "<= 1 s", "ack_p99_s", 1.0, False, 3, " s"),
    ("end-to-end rate, last tenth vs first", ">= 90 %", "last_vs_first", 0.9, True, 2, ""),
)


def b6_targets(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for feed, run in data.get("runs", {}).items():
        for label, goal, key, limit, higher, digits, unit in B6_TARGETS:
            value = run.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                verdict, shown = "not measured", "n/a"
            else:
                ok = value >= limit if higher else value <= limit
                verdict = "met" if ok else "**missed**"
                if key == "last_vs_first":
                    shown = f"{num(value * 100, 0)} %"
                else:
                    shown = f"{num(value, digits)}{unit}"
            if not run.get("completed"):
                verdict = "**missed** (the feed did not complete)"
            rows.append((f"B6 {feed}: {label}", goal, shown, verdict))
    return rows


def b6_section(data: dict[str, Any], run: dict[str, Any]) -> list[str]:
    failed = _error("B6 soak", data)
    if failed:
        return failed
    env = run["environment"]
    lines = [
        "## B6 soak",
        "",
        f"Run by `{run['command'].strip()}` ({run['mode']} mode) on {run['started']}, commit "
        f"{env['commit']}{' with local changes' if env['dirty'] else ''}, in "
        f"{num(data.get('seconds'))} s; load average before {env['load_before']}, after "
        f"{run.get('load_after', 'n/a')} (the machine is shared).",
        "",
        f"{num(data['tasks'])} tasks of 0.1 cpu and 0.2 s per feed, on 100 simulated agents of "
        "32 cpus (32,000 slots), fed in batches through `POST /queue/` whenever `queue_depth` "
        "falls under the floor (1x: 20,000, as issue 19's run 1; 2x: 40,000; batches of "
        "10,000, the API's limit). The daemon runs with its defaults "
        "(`scheduler.max_in_flight` 20,000). `python -m bench.b6_soak --tasks N --feed 1x` "
        "runs one feed alone.",
        "",
        "| target | goal | measured | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for target, goal, measured, verdict in b6_targets(data):
        lines.append(f"| {target} | {goal} | {measured} | {verdict} |")
    lines += [
        "",
        "| feed | finished | s | RSS peak MB | in flight max (bound max) | longest stall s "
        "| ack p50 / p99 s | `/status/` p50 / p99 ms | DB MB (end) | WAL MB (max) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for feed, run in data["runs"].items():
        lines.append(
            f"| {feed} | {num(run['finished'])} | {num(run['seconds'])} "
            f"| {num(run['rss_peak_mb'])} "
            f"| {num(run['in_flight_max'])} ({num(run['in_flight_bound_max'])}) "
            f"| {num(run['longest_stall_s'], 1)} "
            f"| {num(run['ack_p50_s'], 3)} / {num(run['ack_p99_s'], 3)} "
            f"| {num(run['status_p50_ms'], 1)} / {num(run['status_p99_ms'], 1)} "
            f"| {num(run['db_mb'], 1)} | {num(run.get('wal_max_mb'), 1)} |"
        )
    for feed, run in data["runs"].items():
        if run.get("feeder_error") or not run.get("completed"):
            lines += [
                "",
                f"Feed {feed} did not complete: {num(run['finished'])} of {num(run['tasks'])} "
                f"finished in {num(run['seconds'])} s"
                + (
                    f"; the feeder failed: `{run['feeder_error']}`"
                    if run.get("feeder_error")
                    else ""
                )
                + ".",
            ]
    lines += [
        "",
        "Acknowledgement latency is the daemon's histogram (`scale_scheduler_status_ack_latency_"
        "seconds`: from an update's arrival to its ACKNOWLEDGE answered); the percentiles are "
        "bucket upper bounds. A stall is the longest time between two samples (every "
        "0.25 s) with no newly finished task, less one sample interval.",
        "",
        "End-to-end rate (tasks finished per second) per tenth of the run:",
        "",
        "| feed | " + " | ".join(f"{i + 1}" for i in range(10)) + " |",
        "| --- |" + " ---: |" * 10,
    ]
    for feed, run in data["runs"].items():
        rates = [num(rate) for rate in run.get("rates", [])]
        rates += ["n/a"] * (10 - len(rates))
        lines.append(f"| {feed} | " + " | ".join(rates) + " |")
    lines += ["", "Over time (RSS MB / tasks in flight / update backlog), ten points per feed:", ""]
    lines += ["| feed | " + " | ".join(f"t{i}" for i in range(10)) + " |"]
    lines += ["| --- |" + " ---: |" * 10]
    for feed, run in data["runs"].items():
        samples = run.get("samples") or []
        points = [samples[int(i * (len(samples) - 1) / 9)] for i in range(10)] if samples else []
        cells = [
            f"{num(p['t'])} s: {num(p['rss_mb'])} / {num(p['in_flight'])} / {num(p['backlog'])}"
            for p in points
        ]
        cells += ["n/a"] * (10 - len(cells))
        lines.append(f"| {feed} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines
