"""B4, the API under load: ``GET /status/`` at concurrency 32 while B1's offer stream runs.

Per round, two measurements side by side with the same load generator (``bench.loadgen``, its
own process, ``b4_seconds`` each):

- ``daemon``: the native daemon (unpaused, empty queue) consuming a fake master's full-speed
  OFFERS stream, warmed up, then the load; the offers/s the daemon kept up meanwhile is kept too;
- ``bare``: ``bench.bare_api``, an aiohttp app with one JSON endpoint and nothing else.

Reported: requests/s, p50/p99/max latency (ms), errors, and the daemon's share of the bare rate.
Then, on a fresh daemon, ``/healthz`` latency while four 16 MB batches are posted at once
(``bench.batch_latency``).
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.b1_offers import start_daemon, start_master
from bench.batch_latency import measure_fresh_daemon
from bench.calibration import Calibrator
from bench.common import Rate, Settings
from bench.procs import Child, pin, python_for

CONCURRENCY = 32


def load(
    url: str, seconds: float, work: Path, name: str, cpus: set[int] | None = None
) -> dict[str, Any]:
    """``bench.loadgen`` against ``url`` for ``seconds``: its result line (``cpus``: the load
    generator runs on these only)."""
    child = Child(
        [
            python_for(),
            "-m",
            "bench.loadgen",
            url,
            "--concurrency",
            str(CONCURRENCY),
            "--seconds",
            str(seconds),
        ],
        work / f"loadgen-{name}.log",
        ready_line=False,
    )
    if cpus is not None:
        pin(child.pid, cpus)
    child.proc.wait(seconds + 60)
    child.stop()
    import json

    for line in reversed((work / f"loadgen-{name}.log").read_text().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"the load generator printed no result: {child.tail()}")


def measure_bare(settings: Settings, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    server = Child([python_for(), "-m", "bench.bare_api"], work / "bare-api.log")
    try:
        return load(server.info["url"] + "/status/", settings.b4_seconds, work, "bare")
    finally:
        server.stop()


def measure_daemon(settings: Settings, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    master = start_master(settings, work)
    daemon = start_daemon(work, master.info["url"], usage=settings.usage_config())
    try:
        daemon.wait(subscribed=True, timeout=60)
        time.sleep(settings.b1_warmup)
        offers: dict[str, Any] = {}

        def sample() -> None:
            offers.update(
                Rate(master.info["url"], {"daemon": daemon.pid}).measure(settings.b4_seconds)
            )

        sampler = threading.Thread(target=sample)
        sampler.start()
        result = load(daemon.url + "/status/", settings.b4_seconds, work, "daemon")
        sampler.join()
        result["offers_per_s_meanwhile"] = offers.get("offers_per_s")
        return result
    finally:
        daemon.stop()
        master.stop()


def run(settings: Settings) -> dict[str, Any]:
    calibrator = Calibrator.for_run(settings)
    rounds = []
    for index in range(settings.rounds):
        work = settings.work / f"b4-{index}"
        bare = measure_bare(settings, work)
        # The daemon's p99 is an absolute target: bracket it with calibration samples.
        daemon = calibrator.calibrated(partial(measure_daemon, settings, work))
        batches = measure_fresh_daemon(work / "batches", settings.offers_path)
        rounds.append(
            {
                "bare": bare,
                "daemon": daemon,
                "batches": batches,
                "ratio": daemon["rps"] / bare["rps"] if bare.get("rps") else None,
            }
        )
    return {"rounds": rounds, "concurrency": CONCURRENCY}
