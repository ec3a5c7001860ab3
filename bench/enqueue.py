"""Enqueue load generator: ``POST /queue/`` batches against a running daemon.

``python -m bench.enqueue URL --tasks N [--batch 10000] [--concurrency 2]`` submits ``N`` tasks
(1 cpu, 128 MiB, ``true``) in batches, ``concurrency`` requests in flight, each answered 201 only
once its batch is committed (durable). Prints one JSON line: tasks, seconds, tasks/s, and the
slowest batch. The request bodies are encoded before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp
import msgspec

TASK = {"name": "bench-task", "cpus": 1, "mem": 128, "command": "true"}


async def run(url: str, tasks: int, batch: int, concurrency: int) -> dict[str, float | int]:
    sizes = [min(batch, tasks - start) for start in range(0, tasks, batch)]
    bodies = {size: msgspec.json.encode([TASK] * size) for size in set(sizes)}
    pending = list(reversed(sizes))
    slowest = 0.0
    submitted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal slowest, submitted
        while pending:
            size = pending.pop()
            started = time.perf_counter()
            async with session.post(
                url.rstrip("/") + "/queue/",
                data=bodies[size],
                headers={"Content-Type": "application/json"},
            ) as response:
                await response.read()
                if response.status != 201:
                    raise RuntimeError(f"POST /queue/ answered {response.status}")
            slowest = max(slowest, time.perf_counter() - started)
            submitted += size

    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "tasks": submitted,
        "seconds": elapsed,
        "rate": submitted / elapsed,
        "slowest_batch_s": slowest,
        "batch": batch,
        "concurrency": concurrency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enqueue", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.tasks, args.batch, args.concurrency))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
