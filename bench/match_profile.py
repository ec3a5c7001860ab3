"""B3's in-process match, alone and quickly: ``python -m bench.match_profile``.

For work on the matcher: p50/p99 of ``match()`` in thread CPU and in wall time over B3's queue,
plain (every task alike, as ``bench.b3_million``'s match) and with a tenth of the tasks
constrained and interleaved (``bench.b3_constrained``, the target's figure), each bracketed by
calibration samples (``bench.calibration``) so the p99 scaled to the reference machine is
printed beside the raw one. Thread CPU leaves out the time other processes on the shared machine
take the core away; the bench itself reports wall time.

``--profile`` runs the constrained case under cProfile too and prints the top functions.
Nothing is written but the recorded offers (``bench/out/offers.json``, made once).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.b3_constrained import _offers, _queue
from bench.calibration import REFERENCE_DECODE_RATE, Calibrator, scale_duration
from bench.common import Settings, percentile
from bench.offer_stream import load_offers
from scale_scheduler.daemon.mesos.mesos_types import Offer
from scale_scheduler.daemon.scheduling.matcher import MatchResult, MatchSettings, match
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import ShapeInterner, TaskState
from scale_scheduler.state.placement_counts import PlacementCounts
from scale_scheduler.state.tasks import Task

Pass = Callable[[], MatchResult]


def plain_queue(tasks: int) -> QueueIndex:
    """B3's queue: ``tasks`` tasks of one shape (1 cpu, 128 MiB) at one priority."""
    shape = ShapeInterner().get(1.0, 128.0)
    records: dict[int, Task] = {}
    index = QueueIndex(records)
    for task_id in range(1, tasks + 1):
        task = records[task_id] = Task(task_id, 100, shape, b"{}", TaskState.QUEUED, 1)
        index.add(task)
    return index


def passes(settings: Settings) -> dict[str, Pass]:
    offers = _offers(settings)
    match_settings = MatchSettings(5.0, 120.0)
    plain = plain_queue(settings.b3_tasks)
    constrained, counts, _ = _queue(settings.b3_tasks, offers, interleaved=True)

    def run(queue: QueueIndex, placement: PlacementCounts | None, given: list[Offer]) -> Pass:
        return lambda: match(
            given,
            queue,
            scheduler_paused=False,
            blocked_hosts={},
            settings=match_settings,
            placement=placement,
        )

    return {"plain": run(plain, None, offers), "constrained": run(constrained, counts, offers)}


def timed(one_pass: Pass, rounds: int) -> dict[str, Any]:
    cpu: list[float] = []
    wall: list[float] = []
    result = one_pass()  # warm: the shapes' plans, the caches of the offers' resources
    gc.freeze()  # as the daemon runs after its start-up load (daemon/service/service.py)
    try:
        for _ in range(rounds):
            wall_start, cpu_start = time.perf_counter(), time.thread_time()
            result = one_pass()
            cpu.append((time.thread_time() - cpu_start) * 1000)
            wall.append((time.perf_counter() - wall_start) * 1000)
    finally:
        gc.unfreeze()
    return {
        "cpu_p50_ms": percentile(cpu, 0.50),
        "cpu_p99_ms": percentile(cpu, 0.99),
        "wall_p50_ms": percentile(wall, 0.50),
        "wall_p99_ms": percentile(wall, 0.99),
        "placed": result.placed,
        "waiting": len(result.waiting),
    }


def measure(settings: Settings, rounds: int, calibration_seconds: float) -> dict[str, Any]:
    calibrator = Calibrator(load_offers(settings.offers_path), calibration_seconds)
    figures: dict[str, Any] = {}
    for name, one_pass in passes(settings).items():
        result, bracket = calibrator.around(lambda: timed(one_pass, rounds))  # noqa: B023
        rate = bracket["rate"]
        for key in ("cpu_p99_ms", "wall_p99_ms"):
            result[key.replace("_ms", "_scaled_ms")] = scale_duration(result[key], rate)
        result["calibration_rate"] = rate
        result["factor"] = REFERENCE_DECODE_RATE / rate
        figures[name] = result
    return figures


def profile(settings: Settings, rounds: int, top: int) -> None:
    one_pass = passes(settings)["constrained"]
    one_pass()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        one_pass()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--calibration-seconds", type=float, default=1.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the constrained case")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    settings = Settings.full()
    settings.b3_tasks = args.tasks
    settings.out = Path(__file__).parent / "out"
    if args.profile:
        profile(settings, min(args.rounds, 100), 30)
        return
    figures = measure(settings, args.rounds, args.calibration_seconds)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.tasks:,} queued, {args.rounds} rounds; ms (scaled: on the reference machine)")
    for name, f in figures.items():
        print(
            f"{name:12} cpu p50 {f['cpu_p50_ms']:6.2f} p99 {f['cpu_p99_ms']:6.2f}"
            f" (scaled {f['cpu_p99_scaled_ms']:6.2f}) | wall p50 {f['wall_p50_ms']:6.2f}"
            f" p99 {f['wall_p99_ms']:6.2f} (scaled {f['wall_p99_scaled_ms']:6.2f})"
            f" | factor {f['factor']:.2f} placed {f['placed']} waiting {f['waiting']}"
        )


if __name__ == "__main__":
    main()
