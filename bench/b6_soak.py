"""B6, soak: a continuous feed of short tasks, as an operator feeds a busy cluster.

A simulator process (``scale-scheduler sim``: 100 agents of 32 cpus, tasks of 0.1 cpu that run
0.2 s, so 32,000 slots) and the daemon as a real process. A feeder submits batches of 10,000
tasks through ``POST /queue/`` whenever ``queue_depth`` falls under a floor, until ``tasks``
were submitted. Two feeds:

- ``1x``: floor 20,000 (the simulator's capacity: the queue never runs dry, the cluster stays
  busy, as in issue 19's run 1);
- ``2x``: floor 40,000 (twice the work waiting at every moment; batches stay at the API's
  limit of 10,000, submitted back to back until the queue is over the floor);
- ``retention``: the 1x feed with ``state.retention_max_tasks`` at a fifth of the feed (200,000
  of a million; quick: 4,000 of 20,000) and a pruning pass every second (the default is a
  minute: a short run would see few), to show that the database file stops growing once
  pruning has caught up.

Sampled every 0.25 s: the daemon's RSS (``/proc``), tasks by state and tasks in flight
(``/metrics``), FINISHED so far; ``/status/`` is polled 10 times a second and timed. Reported:
RSS over time (and its peak), tasks in flight over time (and the peak against the bound), the
longest stall without a newly FINISHED task, the acknowledgement latency p50/p99 (the daemon's
histogram: from an update's arrival to its ACKNOWLEDGE answered), the end-to-end rate per tenth
of the run (per 100,000 at full size), the database and WAL file sizes over time (and, for
the retention feed, the database's growth once pruning has caught up), ``/status/``
p50/p99 during the run, and the CPU the daemon and the simulator spent per finished task over
each tenth (``/proc``): on a shared machine the rate per tenth moves with what the other
processes leave, the CPU per task only with the work each task costs.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import procs
from bench.common import Settings, cpu_seconds, free_port, percentile
from bench.procs import Child, Daemon, rss_mb, write_daemon_config

AGENTS = 100
AGENT_CPUS = 32
TASK = {"name": "soak", "cpus": 0.1, "mem": 32, "command": "true"}
TASK_DURATION = 0.2
SAMPLE_SECONDS = 0.25
FEEDS = {"1x": (20_000, 10_000), "2x": (40_000, 10_000), "retention": (20_000, 10_000)}
"""Feed name: (queue floor, batch size)."""
RETAIN_SHARE = 0.2
"""The retention feed keeps this share of its tasks (``state.retention_max_tasks``)."""
RETENTION_INTERVAL = 1.0
"""The retention feed's ``state.retention_interval`` (seconds)."""


def start_simulator(work: Path, *, trace: bool = False) -> Child:
    """``trace``: the simulator logs its offer cycles and update resends (for
    ``bench.b6_timeline``)."""
    return procs.start_simulator(
        work,
        seed=6,
        agents=AGENTS,
        cpus=AGENT_CPUS,
        mem=AGENT_CPUS * 4096,
        task_duration=TASK_DURATION,
        **({"log_level": "debug"} if trace else {}),
    )


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, for the daemon's own series."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("scale_scheduler_"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None without observations)."""
    buckets: list[tuple[float, float]] = []
    prefix = name + '_bucket{le="'
    for key, value in metrics.items():
        if key.startswith(prefix):
            bound = key[len(prefix) :].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), value))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    wanted = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= wanted:
            return bound
    return buckets[-1][0]


class Feeder(threading.Thread):
    """Submits a batch whenever the queue is under the floor, until ``total`` were submitted;
    times every ``/status/`` poll."""

    def __init__(self, daemon: Daemon, total: int, floor: int, batch: int) -> None:
        super().__init__(daemon=True)
        self.daemon_proc = daemon
        self.total, self.floor, self.batch = total, floor, batch
        self.submitted = 0
        self.status_ms: list[float] = []
        self.error: str | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        bodies: dict[int, bytes] = {}
        try:
            while not self.stop_event.is_set():
                started = time.perf_counter()
                status = self.daemon_proc.status()
                if status is None:
                    time.sleep(0.1)
                    continue
                self.status_ms.append((time.perf_counter() - started) * 1000)
                if self.submitted < self.total and status["queue_depth"] < self.floor:
                    size = min(self.batch, self.total - self.submitted)
                    body = bodies.get(size)
                    if body is None:
                        body = bodies[size] = json.dumps([TASK] * size).encode()
                    request = urllib.request.Request(
                        self.daemon_proc.url + "/queue/",
                        data=body,
                        method="POST",
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=300) as response:
                        response.read()
                    self.submitted += size
                    continue
                time.sleep(0.1)
        except Exception as exc:  # reported with the figures
            self.error = repr(exc)[:500]


def measure(
    work: Path,
    tasks: int,
    feed: str,
    deadline: float,
    *,
    profile: bool = False,
    trace: bool = False,
) -> dict[str, Any]:
    """One feed; ``profile``: the daemon runs under cProfile (``daemon.prof`` in ``work``);
    ``trace``: the simulator logs its offer cycles and resends (``simulator.log``)."""
    work.mkdir(parents=True, exist_ok=True)
    floor, batch = FEEDS[feed]
    keep = max(1, round(tasks * RETAIN_SHARE)) if feed == "retention" else None
    state = (
        {"retention_max_tasks": keep, "retention_interval": RETENTION_INTERVAL}
        if keep is not None
        else None
    )
    sim = start_simulator(work, trace=trace)
    daemon: Daemon | None = None
    samples: list[dict[str, float]] = []
    try:
        port = free_port()
        write_daemon_config(
            work / "config.yaml",
            master=sim.info["leader"],
            db=work / "state.db",
            port=port,
            state=state,
        )
        daemon = Daemon(
            work / "config.yaml",
            port,
            work / "daemon.log",
            profile_to=work / "daemon.prof" if profile else None,
        )
        daemon.wait(subscribed=True, timeout=120)
        feeder = Feeder(daemon, tasks, floor, batch)
        started = time.monotonic()
        feeder.start()
        finished = 0.0
        metrics: dict[str, float] = {}
        while time.monotonic() - started < deadline:
            time.sleep(SAMPLE_SECONDS)
            try:
                with urllib.request.urlopen(daemon.url + "/metrics", timeout=5) as response:
                    metrics = parse_metrics(response.read().decode())
            except OSError:
                continue
            rss, _peak = rss_mb(daemon.pid)
            wal_mb = _size_mb(work / "state.db-wal")
            db_mb = _size_mb(work / "state.db")
            finished = metrics.get('scale_scheduler_tasks_ended_total{state="FINISHED"}', 0.0)
            samples.append(
                {
                    "t": time.monotonic() - started,
                    "daemon_cpu_s": cpu_seconds(daemon.pid),
                    "sim_cpu_s": cpu_seconds(sim.pid),
                    "rss_mb": rss,
                    "finished": finished,
                    "in_flight": metrics.get("scale_scheduler_tasks_in_flight", float("nan")),
                    "in_flight_bound": metrics.get(
                        "scale_scheduler_tasks_in_flight_bound", float("nan")
                    ),
                    "backlog": metrics.get("scale_scheduler_status_update_backlog", float("nan")),
                    "queued": metrics.get("scale_scheduler_queue_depth", 0.0),
                    "wal_mb": wal_mb,
                    "db_mb": db_mb,
                    "pruned": metrics.get("scale_scheduler_tasks_pruned_total", 0.0),
                    **{
                        state.lower(): metrics.get(f'scale_scheduler_tasks{{state="{state}"}}', 0.0)
                        for state in ("LAUNCHING", "STAGING", "STARTING", "RUNNING")
                    },
                }
            )
            if finished >= tasks or feeder.error is not None:
                break
        feeder.stop_event.set()
        feeder.join(10)
        elapsed = time.monotonic() - started
        _rss, peak = rss_mb(daemon.pid)
        ack = "scale_scheduler_status_ack_latency_seconds"
        result: dict[str, Any] = {
            "feed": feed,
            "floor": floor,
            "batch": batch,
            "tasks": tasks,
            "submitted": feeder.submitted,
            "finished": finished,
            "seconds": elapsed,
            "completed": finished >= tasks,
            "feeder_error": feeder.error,
            "rss_peak_mb": peak,
            "rss_max_sampled_mb": max((s["rss_mb"] for s in samples), default=None),
            "wal_max_mb": max((s["wal_mb"] for s in samples), default=None),
            "in_flight_max": max((s["in_flight"] for s in samples), default=None),
            "in_flight_bound_max": max((s["in_flight_bound"] for s in samples), default=None),
            "longest_stall_s": longest_stall(samples, tasks),
            "ack_p50_s": histogram_quantile(metrics, ack, 0.5),
            "ack_p99_s": histogram_quantile(metrics, ack, 0.99),
            "acks": metrics.get(ack + "_count"),
            "status_p50_ms": percentile(feeder.status_ms, 0.5),
            "status_p99_ms": percentile(feeder.status_ms, 0.99),
            "status_polls": len(feeder.status_ms),
            "retain": keep,
            "pruned": metrics.get("scale_scheduler_tasks_pruned_total"),
            "db_growth_after_catch_up": (
                growth_after_catch_up(samples, keep) if keep is not None else None
            ),
            "rates": tenth_rates(samples, tasks),
            "daemon_cpu_ms_per_task": tenth_cpu(samples, tasks, "daemon_cpu_s"),
            "sim_cpu_ms_per_task": tenth_cpu(samples, tasks, "sim_cpu_s"),
            "samples": thin(samples, 200),
        }
    finally:
        if daemon is not None:
            daemon.stop()
        sim.stop()
    db = work / "state.db"
    wal = work / "state.db-wal"
    result["db_mb"] = db.stat().st_size / 1e6 if db.exists() else None
    result["wal_mb"] = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    rates = result["rates"]
    if rates and rates[0]:
        result["last_vs_first"] = rates[-1] / rates[0]
    return result


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


def growth_after_catch_up(samples: list[dict[str, float]], keep: int) -> float | None:
    """How much the database file grew once pruning had caught up: its largest size over the
    second half of the samples taken after twice ``keep`` tasks had finished, against its
    largest over the first half (0.05: 5 % larger). None if the run did not get that far.
    Without pruning the file grows with every task, so the second half is well over the first."""
    after = [s for s in samples if s["finished"] >= 2 * keep]
    if len(after) < 4:
        return None
    half = len(after) // 2
    first = max(s["db_mb"] for s in after[:half])
    last = max(s["db_mb"] for s in after[half:])
    return last / first - 1 if first > 0 else None


def longest_stall(samples: list[dict[str, float]], tasks: int) -> float:
    """Longest time without a newly FINISHED task, from the first finish until all finished."""
    longest = 0.0
    last_change: float | None = None
    previous = 0.0
    for sample in samples:
        if sample["finished"] > previous:
            if last_change is not None:
                longest = max(longest, sample["t"] - last_change)
            last_change = sample["t"]
            previous = sample["finished"]
        if previous >= tasks:
            break
    if last_change is not None and previous < tasks and samples:
        longest = max(longest, samples[-1]["t"] - last_change)
    # Samples are SAMPLE_SECONDS apart: a gap of one interval is no stall.
    return max(0.0, longest - SAMPLE_SECONDS)


def tenth_rates(samples: list[dict[str, float]], tasks: int) -> list[float]:
    """Tasks finished per second over each tenth of the run (each 100,000 of a million); the
    moment a tenth was crossed is interpolated between the two samples around it."""
    step = tasks / 10
    crossings: list[float] = [0.0]
    prev_t, prev_done = 0.0, 0.0
    for sample in samples:
        t, done = sample["t"], sample["finished"]
        while len(crossings) <= 10 and done >= step * len(crossings) > prev_done - 1e-9:
            target = step * len(crossings)
            share = (target - prev_done) / (done - prev_done) if done > prev_done else 1.0
            crossings.append(prev_t + share * (t - prev_t))
        prev_t, prev_done = t, done
    return [step / max(1e-9, b - a) for a, b in itertools.pairwise(crossings)]


def tenth_cpu(samples: list[dict[str, float]], tasks: int, key: str) -> list[float]:
    """CPU milliseconds a process spent per task finished, over each tenth of the run (from the
    first sample at or past one tenth to the first at or past the next). Unlike the rate, this
    does not move when the shared machine gives the process less time: a rising figure is work
    per task growing."""
    step = tasks / 10
    marks: list[dict[str, float]] = [samples[0]] if samples else []
    for sample in samples:
        if len(marks) <= 10 and sample["finished"] >= step * len(marks):
            marks.append(sample)
    return [
        (b[key] - a[key]) * 1000 / max(1.0, b["finished"] - a["finished"])
        for a, b in itertools.pairwise(marks)
    ]


def thin(samples: list[dict[str, float]], keep: int) -> list[dict[str, float]]:
    if len(samples) <= keep:
        return samples
    stride = len(samples) / keep
    return [samples[int(i * stride)] for i in range(keep)] + [samples[-1]]


def run(settings: Settings) -> dict[str, Any]:
    runs = {}
    for feed in FEEDS:
        runs[feed] = measure(
            settings.work / f"b6-{feed}", settings.b6_tasks, feed, settings.b6_deadline
        )
    return {"runs": runs, "tasks": settings.b6_tasks}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.b6_soak")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--feed", default="1x", choices=sorted(FEEDS))
    parser.add_argument("--deadline", type=float, default=900.0)
    parser.add_argument("--work", default="bench/out/work-b6")
    parser.add_argument(
        "--profile", action="store_true", help="run the daemon under cProfile (daemon.prof)"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="the simulator logs its offer cycles and resends (see bench.b6_timeline)",
    )
    args = parser.parse_args()
    result = measure(
        Path(args.work),
        args.tasks,
        args.feed,
        args.deadline,
        profile=args.profile,
        trace=args.trace,
    )
    (Path(args.work) / "samples.json").write_text(json.dumps(result.pop("samples")))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
