"""B7, the usage poller's cost to the offer path: B1 and B4 with the poller on against off.

A cluster of 2,000 agents (the recorded offers' agents, each answering GET_CONTAINERS with
``AGENT_CONTAINERS`` containers from ``bench.fake_agents``, a process of its own: real agents are
other machines, and a fake master serving them too would slow the very offer stream measured),
measured three ways, each once with ``usage.interval: 0`` (off) and once at the daemon's
default interval (on):

- ``b1_paused`` and ``b1_unpaused``: B1's native daemon (offers answered per second);
- ``b4``: B4's ``GET /status/`` load at concurrency 32 while the daemon takes the offer stream
  (requests per second, p99, and the offers/s it kept meanwhile).

A round's requests are spread over most of the interval and rounds repeat every interval from
one start to the next, so a window of exactly one interval, opened once the first round has
begun, holds one round's work whatever its phase: the cost an operator's daemon pays on
average. Each window is checked to have seen a round (the calls the agents answered,
``GET /usage/``'s round count); the order of on and off alternates from round to round so a
drift of the shared machine does not favour one side.

On a machine of two cores or more the daemon's threads are pinned to core 0 and everything
else (fake master, fake agents, the usage worker once started, the load generator) to core 1,
on and off alike: the agents and the master stand for other machines, the worker for the
daemon host's other cores, so the comparison is of the daemon's own loop. Unpinned on a 2-core
machine, the worker, the agents' server and their loopback traffic take turns on the daemon's
core, and B1 lost 6-16 % to that alone (pinned, the same pairs differed by 1-2 %).

``python -m bench.usage_poll`` times one round of the poller alone (its CPU seconds: what a
round takes from the daemon's loop).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import b4_api
from bench.b1_offers import start_daemon, start_master
from bench.common import Rate, Settings, get_json
from bench.offer_stream import load_offers
from bench.procs import ROOT, Child, Daemon, children, clean_env, pin, python_for

VARIANTS = ("b1_paused", "b1_unpaused", "b4")
FIGURES = {
    "b1_paused": (("offers_per_s", "B1 native paused: offers/s"),),
    "b1_unpaused": (("offers_per_s", "B1 native unpaused: offers/s"),),
    "b4": (
        ("rps", "B4 /status/ req/s"),
        ("p99_ms", "B4 /status/ p99"),
        ("offers_per_s_meanwhile", "B4 offers/s meanwhile"),
    ),
}
"""Per variant, the figures compared on against off: (key, label). p99 is lower-better."""
REPORTED = {
    "b1_paused": (("offers_per_cpu_s", "B1 native paused: offers per daemon CPU second"),),
    "b1_unpaused": (("offers_per_cpu_s", "B1 native unpaused: offers per daemon CPU second"),),
    "b4": (("offers_per_cpu_s", "B4 offers per daemon CPU second"),),
}
"""Shown beside them, not judged: the daemon's own cost per offer, which a busy machine moves
less than the rate (the rate also depends on how much CPU the other processes leave)."""
LIMIT = 0.05
"""The poller on may cost at most this share of a figure (issue 18)."""


def ratios(data: dict[str, Any], variant: str, key: str) -> list[float]:
    """Each round's figure with the poller on over the same figure with it off."""
    out = []
    for row in data.get("rounds", []):
        pair = row.get(variant, {})
        on, off = pair.get("on", {}).get(key), pair.get("off", {}).get(key)
        if isinstance(on, (int, float)) and isinstance(off, (int, float)) and off:
            out.append(on / off)
    return out


DAEMON_CPUS = {0}
OTHER_CPUS = {1}
WARMUP_AFTER_FIRST_ROUND = 1.0
"""Seconds into the first round before a window opens (its requests are under way)."""


def _agent_calls(agents: Child) -> int:
    return int(get_json(agents.info["url"] + "/bench/stats")["agent_calls"])


def _usage_rounds(daemon: Daemon) -> int:
    return int(daemon.request("GET", "/usage/", timeout=10)["rounds"])


def measure(settings: Settings, variant: str, interval: float, work: Path) -> dict[str, Any]:
    """One daemon, poller at ``interval`` (0: off), one window of ``settings.b7_window``."""
    work.mkdir(parents=True, exist_ok=True)
    agents = Child([python_for(), "-m", "bench.fake_agents"], work / "fake-agents.log")
    master = start_master(settings, work, agents_port=int(agents.info["port"]))
    daemon = start_daemon(work, master.info["url"], usage={"interval": interval})
    pinned = (os.cpu_count() or 1) >= 2
    try:
        daemon.wait(subscribed=True, timeout=60)
        if pinned:
            pin(daemon.pid, DAEMON_CPUS)
            for other in (master.pid, agents.pid):
                pin(other, OTHER_CPUS)
        if variant == "b1_paused":
            daemon.pause(True)
        # The first round begins one interval after start-up (off: the same wait, for parity).
        time.sleep(settings.b7_interval + WARMUP_AFTER_FIRST_ROUND)
        if pinned:
            for worker in children(daemon.pid):  # the usage worker, started by the first round
                pin(worker, OTHER_CPUS)
        rounds_before = _usage_rounds(daemon)
        calls_before = _agent_calls(agents)
        rate = Rate(
            master.info["url"], {"daemon": daemon.pid, "master": master.pid, "agents": agents.pid}
        )
        if variant == "b4":
            offers: dict[str, Any] = {}

            def sample() -> None:
                offers.update(rate.measure(settings.b7_window))

            sampler = threading.Thread(target=sample)
            sampler.start()
            result = b4_api.load(
                daemon.url + "/status/",
                settings.b7_window,
                work,
                f"usage-{interval:g}",
                cpus=OTHER_CPUS if pinned else None,
            )
            sampler.join()
            result["offers_per_s_meanwhile"] = offers.get("offers_per_s")
            result["cpu_percent"] = offers.get("cpu_percent")
        else:
            result = rate.measure(settings.b7_window)
        result["pinned"] = pinned
        result["usage_rounds_in_window"] = _usage_rounds(daemon) - rounds_before
        result["agent_calls"] = _agent_calls(agents) - calls_before
        rate_key = "offers_per_s_meanwhile" if variant == "b4" else "offers_per_s"
        daemon_cpu = (result.get("cpu_percent") or {}).get("daemon")
        if daemon_cpu and result.get(rate_key):
            result["offers_per_cpu_s"] = result[rate_key] / (daemon_cpu / 100)
        return result
    finally:
        daemon.stop()
        master.stop()
        agents.stop()


def poller_round_cost(agents: int, work: Path) -> dict[str, Any]:
    """``bench.usage_poll``: one round of the daemon's poller over ``agents`` agents, alone."""
    work.mkdir(parents=True, exist_ok=True)
    output = work / "usage-poll.json"
    with (work / "usage-poll.log").open("wb") as log:
        command = [python_for(), "-m", "bench.usage_poll", "--agents", str(agents)]
        subprocess.run(
            [*command, "--rounds", "3", "--output", str(output)],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
            env=clean_env(),
            cwd=ROOT,
            check=True,
        )
    return dict(json.loads(output.read_text()))


def run(settings: Settings) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    for index in range(settings.b7_rounds):
        row: dict[str, Any] = {}
        # Alternate which side goes first: a machine getting busier must not favour one.
        order = (0.0, settings.b7_interval) if index % 2 == 0 else (settings.b7_interval, 0.0)
        for variant in VARIANTS:
            pair: dict[str, Any] = {}
            for interval in order:
                side = "on" if interval else "off"
                try:
                    pair[side] = measure(
                        settings, variant, interval, settings.work / f"b7-{index}-{variant}-{side}"
                    )
                except Exception as exc:  # one broken daemon must not lose the whole run
                    pair[side] = {"error": f"{exc!r}"[:400]}
            row[variant] = pair
        row["order"] = "off, on" if order[0] == 0.0 else "on, off"
        rounds.append(row)
    agents = len({offer["agent_id"]["value"] for offer in load_offers(settings.offers_path)})
    result: dict[str, Any] = {
        "rounds": rounds,
        "interval": settings.b7_interval,
        "window": settings.b7_window,
        "agents": agents,
    }
    try:
        result["round_cost"] = poller_round_cost(agents, settings.work / "b7-round-cost")
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        result["round_cost"] = {"error": f"{exc!r}"[:400]}
    return result
