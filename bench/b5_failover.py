"""B5, failover: three daemon instances on one PostgreSQL, the leader killed or frozen.

A throwaway PostgreSQL cluster (``bench.pg_cluster``), a simulator process (10 agents of 8 cpus)
and three ``scale-scheduler run`` processes on ``state.backend: postgresql`` with the default
election timings (``ha.lease_seconds`` 10, ``ha.renew_seconds`` 2). Before the first round 200
tasks are submitted; they run for the whole bench, so each new leader reconciles them.

Each round finds the leader (``GET /leader/``) and either kills it (``kill -9``) or stops it
(SIGSTOP, continued once a standby has taken over: it then exits 7, deposed). The hand-over is
the time from the signal to the simulator's admitting a new SUBSCRIBE of the same framework id:
the simulator's record (``/sim/record``) times each subscription on its event loop's clock,
which is the machine's monotonic clock, the one the signal is timed on. Also reported: when the
new leader's term began (its ``leadership_acquired`` log line, wall clock), which splits the
hand-over into the election and the subscription. The victim is then started again, as
systemd's ``Restart=`` would, and the next round begins once it answers as a standby.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench import procs
from bench.common import Settings, free_port, get_json, percentile
from bench.pg_cluster import PostgresServer, unavailable_reason
from bench.procs import Child, Daemon

LEASE_SECONDS = 10.0
RENEW_SECONDS = 2.0
"""The election's timings: the daemon's defaults."""
TASKS = 200
"""Tasks running through the whole bench (0.1 cpu each, an hour long)."""
NAMES = ("a", "b", "c")
DATABASE = "b5"


@dataclass
class Instance:
    name: str
    config: Path
    port: int
    log: Path
    daemon: Daemon | None = None

    def start(self) -> Daemon:
        self.daemon = Daemon(self.config, self.port, self.log)
        return self.daemon

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.child.proc.poll() is None

    def role(self) -> str | None:
        try:
            return str(get_json(self.url + "/leader/", timeout=2)["this"]["role"])
        except (OSError, ValueError, KeyError):
            return None

    def acquired_at(self, epoch: int) -> float | None:
        """Wall-clock time of this instance's ``leadership_acquired`` for ``epoch``."""
        for line in self.log.read_text(errors="replace").splitlines():
            if '"leadership_acquired"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("epoch") == epoch:
                return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        return None


def create_database(server: PostgresServer) -> None:
    async def create() -> None:
        admin = await server.admin()
        try:
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await admin.close()

    asyncio.run(create())


def write_config(work: Path, name: str, server: PostgresServer, master: str) -> Instance:
    port = free_port()
    config = work / f"{name}.yaml"
    raw = {
        "mesos": {
            "master": master,
            "hostname": f"b5-{name}",
            "user": "bench",
            "backoff_initial": 0.1,
            "backoff_max": 1.0,
        },
        "api": {"host": "127.0.0.1", "port": port},
        "state": {
            "backend": "postgresql",
            "dsn": server.dsn(DATABASE),
            "password_file": str(server.password_file),
        },
        "ha": {"instance": name, "lease_seconds": LEASE_SECONDS, "renew_seconds": RENEW_SECONDS},
        "logging": {"level": "info", "format": "json"},
    }
    config.write_text(yaml.safe_dump(raw))
    return Instance(name, config, port, work / f"{name}.log")


def subscriptions(sim: Child) -> list[dict[str, Any]]:
    record = get_json(sim.info["leader"] + "/sim/record", timeout=10)
    return list(record["subscriptions"])


def until(what: str, predicate: Any, timeout: float, poll: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(poll)
    raise RuntimeError(f"not within {timeout}s: {what}")


def leader_of(instances: list[Instance]) -> Instance:
    def one() -> Instance | None:
        leaders = [i for i in instances if i.alive() and i.role() == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    found: Instance = until("exactly one leader", one, 60, poll=0.1)
    return found


def epoch_of(instance: Instance) -> int:
    return int(get_json(instance.url + "/leader/", timeout=5)["epoch"])


def failover(
    sim: Child, instances: list[Instance], framework_id: str, fault: str
) -> dict[str, Any]:
    """One round: the leader killed or stopped, until a new subscription of the framework;
    then the victim is started again and waits as a standby."""
    victim = leader_of(instances)
    assert victim.daemon is not None
    seen = len(subscriptions(sim))
    pid = victim.daemon.pid
    started_wall = time.time()
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)

    def new_subscription() -> dict[str, Any] | None:
        subs = subscriptions(sim)
        fresh = [s for s in subs[seen:] if s["began"] > started]
        return fresh[-1] if fresh else None

    limit = 30.0 if fault == "kill" else LEASE_SECONDS + 30.0
    sub = until(f"a new subscription after {fault}", new_subscription, limit)
    handover = sub["began"] - started
    if fault == "stop":
        os.kill(pid, signal.SIGCONT)
    exit_code = victim.daemon.child.proc.wait(60)
    victim.daemon.stop()
    leader = leader_of([i for i in instances if i is not victim])
    epoch = epoch_of(leader)
    acquired = leader.acquired_at(epoch)
    victim.start()
    until(f"{victim.name} answers as a standby", lambda: victim.role() == "standby", 60, 0.1)
    return {
        "fault": fault,
        "victim": victim.name,
        "leader": leader.name,
        "epoch": epoch,
        "handover_s": handover,
        "elected_s": None if acquired is None else acquired - started_wall,
        "same_framework": sub["framework_id"] == framework_id,
        "subscribed_by": sub["hostname"],
        "victim_exit": exit_code,
    }


def measure(work: Path, kills: int, stops: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    server = PostgresServer()
    sim: Child | None = None
    instances: list[Instance] = []
    rounds: list[dict[str, Any]] = []
    try:
        server.init()
        server.start()
        create_database(server)
        sim = procs.start_simulator(work, seed=5, agents=10, cpus=8, mem=32768, task_duration=3600)
        instances = [write_config(work, name, server, sim.info["leader"]) for name in NAMES]
        first = instances[0]
        first.start().wait(subscribed=True, timeout=120)
        for other in instances[1:]:
            other.start()
        for other in instances[1:]:
            until(f"{other.name} stands by", lambda other=other: other.role() == "standby", 120)
        assert first.daemon is not None
        first.daemon.request(
            "POST",
            "/queue/",
            [{"name": f"b5-{i}", "cpus": 0.1, "mem": 32, "command": "true"} for i in range(TASKS)],
        )
        until("the tasks run", lambda: running(first) >= TASKS, 120, 0.2)
        subs = subscriptions(sim)
        framework_id = subs[-1]["framework_id"]
        for fault in ["kill"] * kills + ["stop"] * stops:
            rounds.append(failover(sim, instances, framework_id, fault))
        leader = leader_of(instances)
        final_running = running(leader)
        frameworks = {s["framework_id"] for s in subscriptions(sim)}
    finally:
        for instance in instances:
            if instance.daemon is not None:
                if instance.alive():
                    os.kill(instance.daemon.pid, signal.SIGCONT)
                instance.daemon.stop()
        if sim is not None:
            sim.stop()
        server.remove()
    kill_s = [r["handover_s"] for r in rounds if r["fault"] == "kill"]
    stop_s = [r["handover_s"] for r in rounds if r["fault"] == "stop"]
    elected = [r["elected_s"] for r in rounds if r["fault"] == "kill" and r["elected_s"]]
    return {
        "lease_seconds": LEASE_SECONDS,
        "renew_seconds": RENEW_SECONDS,
        "tasks": TASKS,
        "kills": len(kill_s),
        "stops": len(stop_s),
        "kill_p50_s": percentile(kill_s, 0.5),
        "kill_max_s": max(kill_s, default=None),
        "kill_elected_p50_s": percentile(elected, 0.5),
        "stop_max_s": max(stop_s, default=None),
        "stop_p50_s": percentile(stop_s, 0.5),
        "one_framework": len(frameworks) == 1 and all(r["same_framework"] for r in rounds),
        "tasks_running_at_end": final_running,
        "rounds": rounds,
    }


def running(instance: Instance) -> int:
    with urllib.request.urlopen(
        instance.url + "/tasks/?state=RUNNING&page_size=1", timeout=10
    ) as r:
        return int(json.loads(r.read())["count"])


def run(settings: Settings) -> dict[str, Any]:
    reason = unavailable_reason()
    if reason is not None:  # reported as not run: a machine without PostgreSQL
        return {"not_run": reason}
    return measure(settings.work / "b5", settings.b5_kills, settings.b5_stops)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.b5_failover")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stops", type=int, default=3)
    parser.add_argument("--work", default="bench/out/work-b5")
    args = parser.parse_args()
    result = measure(Path(args.work), args.kills, args.stops)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
