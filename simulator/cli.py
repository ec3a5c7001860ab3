"""Command line of the simulator: `scale-scheduler sim [run options]` and `... sim fault ACTION`.

Owns argument parsing and logging set-up for the simulator process. `main(argv)` runs a
cluster until SIGINT/SIGTERM; `main(["fault", ...])` posts one fault to a running simulator's
`/sim/fault` endpoint and prints the JSON answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import logging
import signal
import sys
import time
from typing import Any

import aiohttp
import structlog

from scale_scheduler.simulator.cluster import SimulatedCluster
from scale_scheduler.simulator.config import (
    AgentSpec,
    SimConfig,
    parse_attributes,
    parse_ports,
)
from scale_scheduler.simulator.faults import RAW_KINDS


def _credentials(values: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for value in values:
        principal, sep, secret = value.partition(":")
        if not sep or not principal:
            raise argparse.ArgumentTypeError(f"--credential needs principal:secret, got {value!r}")
        out.append((principal, secret))
    return tuple(out)


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scale-scheduler sim",
        description="Run a simulated Mesos master (and its agents). "
        "Use 'scale-scheduler sim fault --help' to inject faults into a running one.",
    )
    d = SimConfig()
    a = AgentSpec()
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=5050, help="first master's port; 0 = any free")
    p.add_argument("--masters", type=int, default=d.masters, help="masters on consecutive ports")
    p.add_argument("--agents", type=int, default=d.agents, help="number of agents")
    p.add_argument("--cpus", type=float, default=a.cpus, help="cpus per agent")
    p.add_argument("--mem", type=float, default=a.mem, help="memory (MB) per agent")
    p.add_argument("--disk", type=float, default=a.disk, help="disk (MB) per agent")
    p.add_argument("--gpus", type=float, default=a.gpus, help="gpus per agent")
    p.add_argument("--ports", default="31000-32000", help="port ranges per agent, e.g. 31000-32000")
    p.add_argument(
        "--attributes",
        default="",
        help="agent attributes 'name:value;...'; {i} and {i%%N} expand to the agent index",
    )
    p.add_argument("--hostname", default=a.hostname, help="agent hostname template")
    p.add_argument(
        "--task-duration", type=float, default=d.task_duration, help="RUNNING time (s) by default"
    )
    p.add_argument(
        "--task-start-delay", type=float, default=d.task_start_delay, help="launch to RUNNING (s)"
    )
    p.add_argument("--kill-delay", type=float, default=d.kill_delay, help="KILLING to KILLED (s)")
    p.add_argument(
        "--agent-port",
        type=int,
        default=d.agent_port,
        help="the agents' HTTP endpoint, each agent under /slave(N) (0 = a free port)",
    )
    p.add_argument(
        "--task-cpu-usage",
        type=float,
        default=d.task_cpu_usage,
        help="share of its CPUs a task uses",
    )
    p.add_argument(
        "--task-mem-usage", type=float, default=d.task_mem_usage, help="share of its memory"
    )
    p.add_argument(
        "--task-disk-usage", type=float, default=d.task_disk_usage, help="share of its disk"
    )
    p.add_argument(
        "--no-disk-usage",
        action="store_true",
        help="agents without the disk/du isolator (no disk_used_bytes in their statistics)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (ids, uuids)")
    p.add_argument(
        "--heartbeat-interval", type=float, default=d.heartbeat_interval, help="HEARTBEAT every s"
    )
    p.add_argument(
        "--allocation-interval", type=float, default=d.allocation_interval, help="offer cycle (s)"
    )
    p.add_argument("--offer-timeout", type=float, default=None, help="rescind after (s)")
    p.add_argument(
        "--status-update-retry",
        type=float,
        default=d.status_update_retry,
        help="first resend of an unacknowledged update (s); doubles each time",
    )
    p.add_argument(
        "--agent-reregister-delay",
        type=float,
        default=d.agent_reregister_delay,
        help="after a failover, agents re-register with the new leader this late (s)",
    )
    p.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="PRINCIPAL:SECRET",
        help="enable HTTP basic auth (repeatable)",
    )
    p.add_argument("--zk", default=None, help="zk://host:port/path for leader election")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def fault_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scale-scheduler sim fault", description="Inject a fault into a running simulator."
    )
    p.add_argument("--url", default="http://127.0.0.1:5050", help="any master of the simulator")
    p.add_argument("--framework-id", default=None, help="limit stream faults to one framework")
    sub = p.add_subparsers(dest="action", required=True)
    for name in (
        "stop_heartbeats",
        "resume_heartbeats",
        "hang_stream",
        "unhang_stream",
        "clear_call_faults",
        "rescind_offers",
        "rejoin",
    ):
        sub.add_parser(name.replace("_", "-"), help=name.replace("_", " "))
    close = sub.add_parser("close-stream", help="end subscriber streams")
    close.add_argument("--abort", action="store_true", help="drop the TCP connection instead")
    delay = sub.add_parser("delay-calls", help="delay scheduler calls")
    delay.add_argument("seconds", type=float)
    delay.add_argument("--call-type", default=None)
    delay.add_argument("--count", type=int, default=None)
    fail = sub.add_parser("fail-calls", help="answer scheduler calls with an HTTP error")
    fail.add_argument("status", type=int)
    fail.add_argument("--call-type", default=None)
    fail.add_argument("--count", type=int, default=None)
    fail.add_argument("--message", default="Simulated failure")
    remove = sub.add_parser("remove-agent", help="an agent becomes unreachable")
    remove.add_argument("agent", help="agent id or hostname")
    http = sub.add_parser("agent-http", help="how an agent's HTTP endpoint answers")
    http.add_argument("agent", help="agent id or hostname")
    http.add_argument("mode", choices=["v1", "v0", "silent"])
    add = sub.add_parser("add-agent", help="register one more agent")
    for res in ("cpus", "mem", "disk", "gpus"):
        add.add_argument(f"--{res}", type=float, default=None)
    step = sub.add_parser("step-down", help="the leader leaves the election")
    step.add_argument("--no-rejoin", action="store_true", help="stay out (no leader if alone)")
    inject = sub.add_parser("inject", help="write bad bytes into subscriber streams")
    inject.add_argument("kind", choices=[*RAW_KINDS, "raw"])
    inject.add_argument("--size", type=int, default=None, help="bytes, for oversize kinds")
    inject.add_argument("--data", default=None, help="for kind=raw: the bytes, as text")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    agent = AgentSpec(
        cpus=args.cpus,
        mem=args.mem,
        disk=args.disk,
        gpus=args.gpus,
        ports=parse_ports(args.ports),
        attributes=parse_attributes(args.attributes),
        hostname=args.hostname,
    )
    return SimConfig(
        host=args.host,
        port=args.port,
        masters=args.masters,
        agents=args.agents,
        agent=agent,
        seed=args.seed,
        heartbeat_interval=args.heartbeat_interval,
        allocation_interval=args.allocation_interval,
        offer_timeout=args.offer_timeout,
        task_duration=args.task_duration,
        task_start_delay=args.task_start_delay,
        kill_delay=args.kill_delay,
        agent_port=args.agent_port,
        task_cpu_usage=args.task_cpu_usage,
        task_mem_usage=args.task_mem_usage,
        task_disk_usage=args.task_disk_usage,
        disk_usage_isolation=not args.no_disk_usage,
        status_update_retry=args.status_update_retry,
        agent_reregister_delay=args.agent_reregister_delay,
        credentials=_credentials(args.credential),
        zk=args.zk,
    )


def fault_body(args: argparse.Namespace) -> dict[str, Any]:
    action = args.action.replace("-", "_")
    body: dict[str, Any] = {"action": action}
    if args.framework_id:
        body["framework_id"] = args.framework_id
    if action == "close_stream":
        body["abort"] = args.abort
    elif action in ("delay_calls", "fail_calls"):
        if action == "delay_calls":
            body["seconds"] = args.seconds
        else:
            body["status"] = args.status
            body["message"] = args.message
        if args.call_type:
            body["call_type"] = args.call_type
        if args.count is not None:
            body["count"] = args.count
    elif action == "remove_agent":
        body["agent"] = args.agent
    elif action == "agent_http":
        body["agent"] = args.agent
        body["mode"] = args.mode
    elif action == "add_agent":
        body.update({k: getattr(args, k) for k in ("cpus", "mem", "disk", "gpus")})
        body = {k: v for k, v in body.items() if v is not None}
    elif action == "step_down":
        body["rejoin"] = not args.no_rejoin
    elif action == "inject":
        if args.kind == "raw":
            body["raw_base64"] = base64.b64encode((args.data or "").encode()).decode()
        else:
            body["kind"] = args.kind
            if args.size is not None:
                body["size"] = args.size
    return body


async def _post_fault(url: str, body: dict[str, Any]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url.rstrip("/") + "/sim/fault", json=body) as resp,
    ):
        return resp.status, await resp.text()


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(message)s", stream=sys.stderr)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


GC_THRESHOLDS = (100_000, 50, 100)
"""The process's cyclic-GC thresholds (Python's default: 700, 10, 10)."""


def _tune_gc() -> None:
    """Keep the cyclic GC off the hot path of a large cluster.

    Tasks, their TaskInfos and status updates are millions of acyclic objects that reference
    counting frees; with the default thresholds the collector re-scans them all the time (more
    than half of the CPU of a 64,000-task launch burst). The start-up state (agents, apps) is
    frozen out of every later collection; collections stay on for the rare cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        gc.callbacks.append(_GcTimer())


class _GcTimer:
    """At debug level: each collection over 10 ms (the simulator's loop stands still while it
    runs) is logged as ``sim_gc`` with its generation and duration."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        if took > 0.01:
            log = structlog.get_logger(__name__)
            log.debug(
                "sim_gc",
                generation=info["generation"],
                ms=round(took * 1000, 1),
                collected=info["collected"],
            )


async def serve(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with SimulatedCluster(config) as sim:
        _tune_gc()
        # One machine-readable line so scripts can find the ports (also with --port 0).
        print(json.dumps({"masters": sim.urls, "leader": sim.leader_url}), flush=True)
        await stop.wait()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "fault":
        args = fault_parser().parse_args(argv[1:])
        try:
            status, text = asyncio.run(_post_fault(args.url, fault_body(args)))
        except aiohttp.ClientError as exc:
            print(f"cannot reach the simulator at {args.url}: {exc}", file=sys.stderr)
            return 2
        print(text)
        return 0 if status == 200 else 1
    args = run_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"scale-scheduler sim: error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(args.log_level)
    asyncio.run(serve(config))
    return 0
