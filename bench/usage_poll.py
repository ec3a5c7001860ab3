"""The usage poller's cost: rounds over thousands of agents, timed in the daemon's own code.

``python -m bench.usage_poll --agents 2000 --containers 10 --rounds 5`` starts
``bench.fake_agents`` (every agent's ``POST /slave(N)/api/v1`` GET_CONTAINERS, ``containers``
containers each, CPU time accruing, one port for all, as the simulator serves its agents),
then runs the daemon's ``UsagePoller`` in this process over that many online nodes, asking
through the usage worker process as the daemon does (``--client inline``: through
``AgentUsageClient`` in this process, as before the worker existed). Per round it reports the
wall time, this process's CPU seconds (what a round takes from the daemon's one loop), the
worker's CPU seconds, and the event loop's lag while the round runs (a 5 ms probe timer's
lateness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds
from scale_scheduler.daemon.mesos.agent_usage_api import AgentUsageClient, AgentUsageFetcher
from scale_scheduler.daemon.mesos.usage_worker_client import AgentUsageWorker
from scale_scheduler.daemon.scheduling.usage_poller import UsagePoller
from scale_scheduler.daemon.service.config import UsageConfig
from scale_scheduler.state.nodes import Node, NodeRepository
from scale_scheduler.state.store import Store

PROBE_INTERVAL = 0.005


async def _probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + PROBE_INTERVAL
        await asyncio.sleep(PROBE_INTERVAL)  # the probe: how late this timer fires
        lags.append(max(0.0, loop.time() - due))


async def measure(
    port: int, agents: int, containers: int, rounds: int, concurrency: int, inline: bool = False
) -> dict[str, object]:
    scratch = tempfile.TemporaryDirectory()
    store = await Store.open(Path(scratch.name) / "state.db")
    try:
        nodes = NodeRepository(store, time.time)
        for index in range(agents):
            nodes.by_id[index + 1] = Node(
                index + 1,
                f"agent-{index}",
                f"a{index}",
                online=True,
                agent_endpoint=f"http://127.0.0.1:{port}/slave({index + 1})",
            )
        settings = UsageConfig(interval=15.0, timeout=5.0, concurrency=concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            worker = AgentUsageWorker(settings.timeout, concurrency, lambda: None)
            client: AgentUsageFetcher = worker
            if inline:
                client = AgentUsageClient(lambda: session, lambda: None, settings.timeout)
            else:  # started (and its imports done) before the rounds are timed
                await worker.fetch(f"http://127.0.0.1:{port}/slave(1)")
            poller = UsagePoller(settings, nodes, {}, client, lambda: "fw-0")
            # The loop's lag with nothing but the probe on it, for comparison (shared machine).
            idle: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(_probe(idle, stop))
            await asyncio.sleep(2.0)  # the idle window the probe measures
            stop.set()
            await probe
            idle.sort()
            results = []
            for _ in range(rounds):
                lags: list[float] = []
                stop = asyncio.Event()
                probe = asyncio.create_task(_probe(lags, stop))
                worker_pid = worker.pid
                worker_cpu = cpu_seconds(worker_pid) if worker_pid else 0.0
                cpu = time.process_time()
                snapshot = await poller.poll_once()
                cpu = time.process_time() - cpu
                worker_pid = worker.pid
                worker_cpu = cpu_seconds(worker_pid) - worker_cpu if worker_pid else 0.0
                stop.set()
                await probe
                lags.sort()
                results.append(
                    {
                        "round_seconds": round(snapshot.round_seconds, 3),
                        "cpu_seconds": round(cpu, 3),
                        "worker_cpu_seconds": round(worker_cpu, 3),
                        "answered": snapshot.agents_answered,
                        "lag_max_ms": round(1000 * lags[-1], 1) if lags else 0.0,
                        "lag_p99_ms": round(1000 * lags[int(0.99 * (len(lags) - 1))], 1)
                        if lags
                        else 0.0,
                        "used_cpus": snapshot.used.cpus,
                    }
                )
            await worker.close()
    finally:
        await store.close()
        scratch.cleanup()
    return {
        "idle_lag_max_ms": round(1000 * idle[-1], 1) if idle else 0.0,
        "idle_lag_p99_ms": round(1000 * idle[int(0.99 * (len(idle) - 1))], 1) if idle else 0.0,
        "agents": agents,
        "containers_per_agent": containers,
        "concurrency": concurrency,
        "client": "inline" if inline else "worker",
        "rounds": results,
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
        "median_round_seconds": statistics.median(r["round_seconds"] for r in results),
        "median_worker_cpu_seconds": statistics.median(r["worker_cpu_seconds"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=UsageConfig().concurrency)
    parser.add_argument("--output", default="", help="also write the result (JSON) here")
    parser.add_argument(
        "--client",
        choices=("worker", "inline"),
        default="worker",
        help="ask through the usage worker process (the daemon's way) or in this process",
    )
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_agents", "--containers", str(args.containers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["port"])
        result = asyncio.run(
            measure(
                port,
                args.agents,
                args.containers,
                args.rounds,
                args.concurrency,
                inline=args.client == "inline",
            )
        )
    finally:
        server.terminate()
        server.wait(10)
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
