"""``scale-scheduler demo``: the daemon against an in-process simulated Mesos cluster.

Owns the demo only: it starts a ``SimulatedCluster``, runs the real daemon (``service.serve``, the
same wiring as ``scale-scheduler run``) on a temporary state directory, submits sample tasks
through the REST API, prints the API's URL, commands to try and the tasks' progress, and stops
both cleanly on Ctrl-C (or by itself with ``--exit-when-done``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from scale_scheduler.api.app import SUPERVISOR, build_app
from scale_scheduler.daemon.service.config import Config, parse_config
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.logging_setup import configure_logging
from scale_scheduler.daemon.service.service import serve
from scale_scheduler.simulator import AgentSpec, SimulatedCluster

DEFAULT_PORT = 8000
PROGRESS_INTERVAL = 0.5

ACTIVE = ("LAUNCHING", "STAGING", "STARTING", "RUNNING", "KILLING", "UNREACHABLE")
FAILED = ("FAILED", "KILLED", "LOST", "ERROR", "DROPPED", "GONE", "CANCELED")


def main(args: argparse.Namespace) -> int:
    state_dir = Path(args.keep_state) if args.keep_state else None
    temporary = state_dir is None
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="scale-scheduler-demo-"))
    else:
        state_dir.mkdir(parents=True, exist_ok=True)
    port = args.port if args.port is not None else port_or_any(DEFAULT_PORT)
    configure_logging(args.log_level, "console", stream=sys.stderr)
    try:
        return asyncio.run(Demo(args, state_dir, port, sys.stdout).run())
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return ExitCode.FAILURE
    finally:
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)


def port_or_any(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else 0 (any free port)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


def demo_config(master: str, state_dir: Path, port: int, log_level: str) -> Config:
    """Short filters and retries, so the demo moves at a watchable pace."""
    return parse_config(
        {
            "mesos": {
                "master": master,
                "framework_name": "scale-scheduler-demo",
                "hostname": "localhost",
                "backoff_initial": 0.2,
                "backoff_max": 2.0,
            },
            "api": {"host": "127.0.0.1", "port": port},
            "state": {"path": str(state_dir / "scale-scheduler.db")},
            "logging": {"level": log_level, "format": "console"},
            "scheduler": {
                "refuse_seconds": 1.0,
                "idle_refuse_seconds": 2.0,
                "revive_interval": 0.5,
                "agents_refresh_interval": 2.0,
            },
        },
        environ={},
    )


def sample_tasks(count: int, longest: float, rng: random.Random) -> list[dict[str, Any]]:
    tasks = []
    for i in range(1, count + 1):
        seconds = round(rng.uniform(longest / 3, longest), 2)
        tasks.append(
            {
                "name": f"demo-{i}",
                "command": f"sleep {seconds:g}",
                "cpus": rng.choice((0.5, 1.0)),
                "mem": rng.choice((128, 256, 512)),
                "priority": rng.choice((50, 100, 100, 200)),
                "labels": {"sim.duration": f"{seconds:g}"},
            }
        )
    return tasks


class Demo:
    def __init__(self, args: argparse.Namespace, state_dir: Path, port: int, out: TextIO) -> None:
        self.args = args
        self.state_dir = state_dir
        self.port = port
        self.out = out

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def run(self) -> int:
        args = self.args
        rng = random.Random(args.seed)
        sim = SimulatedCluster(
            agents=args.agents,
            agent=AgentSpec(cpus=2, mem=4096, disk=20000),
            heartbeat_interval=5.0,
            allocation_interval=0.2,
            default_refuse_seconds=1.0,
            seed=args.seed,
        )
        await sim.start()
        try:
            return await self._with_cluster(sim, rng)
        finally:
            await sim.stop()
            self.say("simulated Mesos master stopped")

    async def _with_cluster(self, sim: SimulatedCluster, rng: random.Random) -> int:
        config = demo_config(sim.url, self.state_dir, self.port, self.args.log_level)
        app = build_app(config)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        daemon = asyncio.ensure_future(serve(config, app=app, on_ready=ready.set_result))
        first: list[asyncio.Future[Any]] = [daemon, ready]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            code = daemon.result()
            self.say(f"the daemon did not start (exit status {int(code)}); see the log above")
            if code is ExitCode.API_BIND_FAILED:
                self.say("the API port is taken: try --port 0 (any free port)")
            return int(code)
        url = ready.result()
        self._banner(url, sim)
        async with aiohttp.ClientSession() as session:
            watcher = asyncio.ensure_future(self._submit_and_watch(session, url, rng, app))
            await asyncio.wait([daemon, watcher], return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not watcher.cancelled() and watcher.exception() is not None:
                self.say(f"the demo failed: {watcher.exception()}; stopping")
                app[SUPERVISOR].fail(ExitCode.FAILURE, "the demo's task driver failed")
            code = await daemon
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        self.say(f"daemon stopped (exit status {int(code)})")
        if self.args.keep_state:
            self.say(f"state kept in {self.state_dir}")
        return int(code)

    def _banner(self, url: str, sim: SimulatedCluster) -> None:
        host = sim.agents[0].hostname if sim.agents else "sim-agent-0"
        cli = f"scale-scheduler {{}} --url {url}"
        self.say(f"scale-scheduler demo: the API is at {url}")
        self.say(f"dashboard: open {url} in a browser")
        self.say(f"simulated Mesos master at {sim.url} with {len(sim.agents)} agents")
        self.say(f"database: {self.state_dir / 'scale-scheduler.db'}")
        self.say()
        self.say("In another terminal, try:")
        for command in (
            "status",
            "tasks",
            "tasks --state RUNNING",
            "nodes",
            f"node-pause {host} --reason maintenance",
            f"node-resume {host}",
            "pause",
            "resume",
            "submit --name hello --command 'echo hello' --cpus 0.5 --mem 64 --label sim.duration=3",
            "kill 1",
        ):
            self.say("  " + cli.format(command))
        self.say(f"  curl {url}status/")
        if not self.args.exit_when_done:
            self.say()
            self.say("Press Ctrl-C to stop.")

    async def _submit(self, session: aiohttp.ClientSession, url: str, rng: random.Random) -> int:
        tasks = sample_tasks(self.args.tasks, self.args.duration, rng)
        if not tasks:
            return 0
        async with session.post(url + "queue/", json=tasks) as response:
            if response.status != 201:
                raise RuntimeError(f"submitting the sample tasks failed: {await response.text()}")
        self.say(f"submitted {len(tasks)} sample tasks")
        return len(tasks)

    async def _submit_and_watch(
        self, session: aiohttp.ClientSession, url: str, rng: random.Random, app: web.Application
    ) -> None:
        submitted = await self._submit(session, url, rng)
        await self._watch(session, url, submitted, app)

    async def _watch(
        self, session: aiohttp.ClientSession, url: str, submitted: int, app: web.Application
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        last: tuple[int, int, int, int] | None = None
        announced = False
        while True:
            async with session.get(url + "tasks/", params={"page_size": "10000"}) as response:
                body = await response.json()
            states = Counter(task["state"] for task in body["results"])
            counts = (
                states["QUEUED"],
                sum(states[s] for s in ACTIVE),
                states["FINISHED"],
                sum(states[s] for s in FAILED),
            )
            if counts != last:
                last = counts
                queued, running, finished, failed = counts
                self.say(
                    f"[{loop.time() - started:6.1f}s] queued {queued:4d}  running {running:4d}"
                    f"  finished {finished:4d}  failed/canceled {failed:4d}"
                )
            done = counts[0] == 0 and counts[1] == 0 and body["count"] >= submitted
            if done and not announced:
                announced = True
                if self.args.exit_when_done:
                    self.say("every task has ended; stopping")
                    app[SUPERVISOR].stop("demo done")
                    return
                self.say("every task has ended; submit more (see above) or press Ctrl-C to stop")
            elif not done:
                announced = False
            await asyncio.sleep(PROGRESS_INTERVAL)
