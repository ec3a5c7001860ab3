"""B4's batch scenario: ``/healthz`` latency while four 16 MB batches are submitted at once.

Four clients each ``POST /queue/`` a batch of 10,000 tasks whose bodies are just under the
default ``api.max_body_bytes`` (16 MiB), all at the same moment, while one client polls
``GET /healthz`` every few milliseconds. A batch is decoded and validated in chunks with the
event loop free in between (``api/task_body.py``), so the probe's latency shows how long the loop
was held at a stretch. Reported: the probe's p50/p99/max (ms), how many probes ran, and the
seconds until every batch was answered 201.

The probe runs in its own thread with a blocking client, so the submitting clients' own event
loop (encoding and reading 16 MB bodies) does not delay it. ``python -m bench.batch_latency``
runs it once against a fresh daemon and an idle fake master and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from bench.common import percentile

BATCHES = 4
TASKS_PER_BATCH = 10_000
BODY_BYTES = 16 * 1024 * 1024 - 64 * 1024  # under api.max_body_bytes's default
PROBE_INTERVAL = 0.005


def batch_body(tasks: int = TASKS_PER_BATCH, size: int = BODY_BYTES) -> bytes:
    """A batch of ``tasks`` tasks padded (in each command) to about ``size`` bytes."""
    empty = msgspec.json.encode(
        [{"name": "big", "cpus": 1, "mem": 128, "command": "true #"}] * tasks
    )
    pad = max(0, (size - len(empty)) // tasks)
    task = {"name": "big", "cpus": 1, "mem": 128, "command": "true #" + "x" * pad}
    return msgspec.json.encode([task] * tasks)


class Probe(threading.Thread):
    """``GET /healthz`` in a closed loop with a short pause, on one kept-alive connection."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                self.latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    self.errors.append(f"/healthz answered {response.status}")
                self.stop.wait(PROBE_INTERVAL)
        except OSError as exc:
            self.errors.append(repr(exc))
        finally:
            connection.close()


async def _submit(url: str, bodies: list[bytes]) -> list[int]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(body: bytes) -> int:
            async with session.post(
                url.rstrip("/") + "/queue/",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(post(body) for body in bodies)))


def measure(url: str, batches: int = BATCHES) -> dict[str, Any]:
    """Submit ``batches`` 16 MB batches at once while probing ``/healthz``."""
    body = batch_body()
    probe = Probe(url)
    probe.start()
    time.sleep(0.2)  # a few quiet probes first: the baseline
    started = time.perf_counter()
    statuses = asyncio.run(_submit(url, [body] * batches))
    elapsed = time.perf_counter() - started
    probe.stop.set()
    probe.join(30)
    ms = [x * 1000 for x in probe.latencies]
    return {
        "batches": batches,
        "tasks_per_batch": TASKS_PER_BATCH,
        "body_bytes": len(body),
        "statuses": statuses,
        "submit_seconds": elapsed,
        "probes": len(ms),
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms) if ms else float("nan"),
        "errors": probe.errors[:3],
    }


def measure_fresh_daemon(work: Path, offers_path: Path) -> dict[str, Any]:
    """``measure`` against a new daemon whose master (the fake one, idle) sends no offers."""
    from bench.b1_offers import start_daemon
    from bench.procs import Child, python_for

    work.mkdir(parents=True, exist_ok=True)
    master = Child(
        [python_for(), "-m", "bench.fake_master", "--offers", str(offers_path), "--mode", "idle"],
        work / "fake-master.log",
    )
    daemon = start_daemon(work, master.info["url"], level="warning")
    try:
        daemon.wait(subscribed=True, timeout=60)
        return measure(daemon.url)
    finally:
        daemon.stop()
        master.stop()


def main(argv: list[str] | None = None) -> int:
    from bench.common import Settings
    from bench.offer_stream import load_offers

    parser = argparse.ArgumentParser(prog="python -m bench.batch_latency", description=__doc__)
    parser.add_argument("--work", default="bench/out/work-batches")
    args = parser.parse_args(argv)
    settings = Settings.quick_mode()
    settings.out = Path("bench/out")
    load_offers(settings.offers_path)
    print(json.dumps(measure_fresh_daemon(Path(args.work), settings.offers_path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
