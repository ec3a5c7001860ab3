"""B2, launch rate: from unpause until every queued task is launched, and until all have run.

A simulator process (``scale-scheduler sim``: ``agents`` agents of 32 cpus and 128 GiB, Mesos's
1 s allocation interval, tasks RUNNING for ``task_duration`` s) and the daemon as a real process.
The daemon is paused, ``tasks`` tasks (1 cpu, 128 MiB) are enqueued through the batch API, then
the scheduler is unpaused and polled:

- ``intent_s``: until ``/status/`` shows ``queue_depth`` 0: every task's launch intent is
  committed and its ACCEPT is on its way (20 polls/s);
- ``accepted_s`` (from the daemon's ``offer_pass`` log events, so at info level only): until
  the pass that launched the last task ended, i.e. every ACCEPT was answered 202;
- ``running_s``: until the task table holds ``tasks`` tasks RUNNING or FINISHED (4 polls/s).

2,000 agents of 32 cpus hold 64,000 such tasks at once, so 100,000 need a second wave once the
first tasks finish (``task_duration``, the status updates, the next allocation cycle). The
daemon's own launch rate is therefore also taken from its first launching pass, which gets every
agent's offer at once (tasks launched over that pass's duration: match, intent commit, ACCEPTs).
Run at the production logging default (JSON, info) and at warning, to price the logging.

Each round also runs the peer, ``bench.bare_launcher`` (the same tasks, no persistence), on a
simulator started with the same arguments; the daemon's rates from its first launching pass are
compared with it. Every run is bracketed by calibration samples (``bench.calibration``).

Each round also runs the daemon at info on PostgreSQL (``state.backend: postgresql``, a
database of its own on a throwaway cluster the scenario starts: ``bench.pg_cluster``), beside
SQLite: the same figures, judged against the same targets.

Flow control is off here (``scheduler.max_in_flight: 0``): B2 times the launch pipeline itself.
With the default bound, launches follow the rate at which their status updates are handled
(a few thousand tasks/s on this machine), which is what B6 measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import pg_cluster, procs
from bench.calibration import Calibrator
from bench.common import Settings, cpu_seconds, free_port
from bench.offer_stream import AGENT_ATTRIBUTES, AGENT_CPUS, AGENT_DISK, AGENT_MEM
from bench.procs import Child, Daemon, python_for, write_daemon_config
from bench.profiles import profile_summary


def _attributes() -> str:
    return ";".join(f"{name}:{value}" for name, value in AGENT_ATTRIBUTES)


def start_simulator(settings: Settings, work: Path) -> Child:
    return procs.start_simulator(
        work,
        seed=2,
        agents=settings.b2_agents,
        cpus=AGENT_CPUS,
        mem=AGENT_MEM,
        disk=AGENT_DISK,
        attributes=_attributes(),
        task_duration=settings.b2_task_duration,
    )


def enqueue(url: str, tasks: int, work: Path, concurrency: int = 2) -> dict[str, Any]:
    child = Child(
        [
            python_for(),
            "-m",
            "bench.enqueue",
            url,
            "--tasks",
            str(tasks),
            "--concurrency",
            str(concurrency),
        ],
        work / "enqueue.log",
        ready_line=False,
    )
    return _wait_json(child, work / "enqueue.log", 900)


def _wait_json(child: Child, log: Path, timeout: float) -> dict[str, Any]:
    child.proc.wait(timeout)
    child.stop()
    for line in reversed(log.read_text().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result from {child.argv[:4]}: {child.tail()}")


def _count(daemon: Daemon, state: str) -> int:
    return int(daemon.request("GET", f"/tasks/?state={state}&page_size=1", timeout=5)["count"])


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pass_figures(log_path: Path, since: float, tasks: int) -> dict[str, Any]:
    """Launching passes after ``since``: when the last ACCEPT was answered, the first launching
    pass (the first wave: every agent's offer at once), and the pipeline's rate over all."""
    passes = []
    with open(log_path, "rb") as log:
        for raw in log:
            if b'"offer_pass"' not in raw:
                continue
            event = json.loads(raw)
            end = _timestamp(event["timestamp"])
            if end < since or not event.get("launched"):
                continue
            passes.append((end - event["ms"] / 1000, end, event["launched"], event["ms"] / 1000))
    if not passes:
        return {}
    launched = 0
    accepted_s = None
    for _start, end, count, _seconds in passes:
        launched += count
        if launched >= tasks and accepted_s is None:
            accepted_s = end - since
    busy = sum(p[3] for p in passes)
    first = passes[0]
    first_offer_s = first[0] - since
    from_first = accepted_s - first_offer_s if accepted_s is not None else None
    return {
        "passes": len(passes),
        "accepted_s": accepted_s,
        "accept_rate": tasks / accepted_s if accepted_s else None,
        "first_pass_tasks": first[2],
        "first_pass_s": first[3],
        "first_pass_rate": first[2] / first[3],
        "first_offer_after_unpause_s": first_offer_s,
        # From the first launching pass on, as the bare launcher's figure is taken.
        "accept_rate_from_first_pass": tasks / from_first if from_first else None,
        "pipeline_rate": launched / busy if busy else None,
    }


def measure(
    settings: Settings,
    work: Path,
    level: str,
    profile: bool = False,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One daemon run; ``state`` adds to its ``state`` settings (another backend)."""
    work.mkdir(parents=True, exist_ok=True)
    tasks = settings.b2_tasks
    sim = start_simulator(settings, work)
    daemon: Daemon | None = None
    try:
        port = free_port()
        write_daemon_config(
            work / "config.yaml",
            master=sim.info["leader"],
            db=work / "state.db",
            port=port,
            level=level,
            scheduler={"max_in_flight": 0},
            state=state,
        )
        prof = work / "daemon.prof" if profile else None
        daemon = Daemon(work / "config.yaml", port, work / "daemon.log", profile_to=prof)
        daemon.wait(subscribed=True, timeout=120)
        daemon.pause(True)
        queued = enqueue(daemon.url, tasks, work)
        time.sleep(1.0)
        since = time.time()
        started = time.monotonic()
        cpu_before = {"simulator": cpu_seconds(sim.pid), "daemon": cpu_seconds(daemon.pid)}
        daemon.pause(False)
        intent_s = running_s = None
        reached = 0
        deadline = started + settings.b2_deadline
        last_count = 0.0
        while time.monotonic() < deadline:
            now = time.monotonic()
            try:
                if intent_s is None:
                    status = daemon.status()
                    if status is not None and status["queue_depth"] == 0:
                        intent_s = now - started
                if running_s is None and now - last_count >= 0.25:
                    last_count = now
                    reached = _count(daemon, "RUNNING") + _count(daemon, "FINISHED")
                    if reached >= tasks:
                        running_s = time.monotonic() - started
                # A busy daemon can leave every status poll of a short run unanswered until
                # all tasks ran: then the next answer (queue depth 0) bounds 'intent' instead
                # of leaving it unmeasured.
                if running_s is not None and intent_s is not None:
                    break
            except OSError:
                pass  # the daemon's loop is too busy to answer in time: poll again
            time.sleep(0.05)
        cpu = {
            name: cpu_seconds(pid) - cpu_before[name]
            for name, pid in (("simulator", sim.pid), ("daemon", daemon.pid))
        }
        result: dict[str, Any] = {
            "tasks": tasks,
            "backend": (state or {}).get("backend", "sqlite"),
            "agents": settings.b2_agents,
            "logging": f"json, {level}",
            "enqueue": queued,
            "intent_s": intent_s,
            "running_s": running_s,
            "ran_by_deadline": reached,
            "deadline_s": settings.b2_deadline,
            # CPU from unpause until every task ran (or the deadline), per task queued.
            "simulator_us_per_task": cpu["simulator"] / tasks * 1e6,
            "daemon_us_per_task": cpu["daemon"] / tasks * 1e6,
        }
    finally:
        if daemon is not None:
            daemon.stop()
        sim.stop()
    if level == "info":
        result.update(pass_figures(work / "daemon.log", since, tasks))
    if profile:
        result["profile"] = profile_summary(work / "daemon.prof")
    return result


def measure_bare_launcher(settings: Settings, work: Path) -> dict[str, Any]:
    """The peer (``bench.bare_launcher``) launching the same tasks on a simulator started with
    the same arguments as the daemon's."""
    work.mkdir(parents=True, exist_ok=True)
    sim = start_simulator(settings, work)
    child: Child | None = None
    try:
        child = Child(
            [
                python_for(),
                "-m",
                "bench.bare_launcher",
                sim.info["leader"],
                "--tasks",
                str(settings.b2_tasks),
                "--deadline",
                str(settings.b2_deadline),
            ],
            work / "bare-launcher.log",
            ready_line=False,
        )
        return _wait_json(child, work / "bare-launcher.log", settings.b2_deadline + 60)
    except Exception as exc:  # a broken peer must not lose the daemon's figures of the round
        return {"error": f"{exc!r}"[:400]}
    finally:
        if child is not None:
            child.stop()  # already stopped unless it overran its deadline
        sim.stop()


def measure_postgresql(
    settings: Settings, work: Path, server: pg_cluster.PostgresServer | None, database: str
) -> dict[str, Any]:
    """The daemon at info on a new database of ``server`` (None: no PostgreSQL here)."""
    if server is None:
        return {
            "error": "no PostgreSQL: " + (pg_cluster.unavailable_reason() or "it did not start")
        }
    return measure(settings, work, "info", state=server.state_settings(database))


def run(settings: Settings) -> dict[str, Any]:
    """Up to two rounds at info and one at warning (each full-size round runs for minutes: the
    status updates of 100,000 tasks), each round with the daemon at info on PostgreSQL and its
    bare launcher peer, then, in full mode, one info run under cProfile that stops waiting a
    minute after unpause (enough to cover the launches and the update flood). Each daemon
    measurement is bracketed by calibration samples (``bench.calibration``)."""
    calibrator = Calibrator.for_run(settings)
    rounds = []
    with contextlib.ExitStack() as stack:
        server: pg_cluster.PostgresServer | None = None
        with contextlib.suppress(RuntimeError):
            server = stack.enter_context(pg_cluster.cluster())
        for index in range(max(1, min(settings.rounds, 2))):
            work = settings.work
            row = {
                "info": calibrator.calibrated(
                    partial(measure, settings, work / f"b2-{index}-info", "info")
                )
            }
            if index == 0:
                row["warning"] = calibrator.calibrated(
                    partial(measure, settings, work / f"b2-{index}-warning", "warning")
                )
            row["postgresql"] = calibrator.calibrated(
                partial(
                    measure_postgresql,
                    settings,
                    work / f"b2-{index}-postgresql",
                    server,
                    f"b2_{index}",
                )
            )
            row["bare_launcher"] = calibrator.calibrated(
                partial(measure_bare_launcher, settings, work / f"b2-{index}-bare-launcher")
            )
            rounds.append(row)
    result: dict[str, Any] = {"rounds": rounds}
    if settings.profile:
        short = dataclasses.replace(settings, b2_deadline=60.0)
        result["profile_run"] = measure(short, settings.work / "b2-profile", "info", True)
    return result
