"""B7, the usage poller's cost to the offer path: B1 and B4 with the poller on against off.

A cluster of 2,000 agents (the recorded offers' agents, each answering GET_CONTAINERS with
``AGENT_CONTAINERS`` containers from ``bench.fake_agents``, a process of its own: real agents are
other machines, and a fake master serving them too would slow the very offer stream measured),
measured three ways, each with two daemons at once, one with ``usage.interval: 0`` (off) and
one at the daemon's default interval (on), each with its own fake master:

- ``b1_paused`` and ``b1_unpaused``: B1's native daemon (offers answered per second);
- ``b4``: B4's ``GET /status/`` load at concurrency 32 on each daemon while it takes the offer
  stream (requests per second, p99, and the offers/s it kept meanwhile).

A round's requests are spread over most of the interval and rounds repeat every interval from
one start to the next, so a window of exactly one interval, opened once the first round has
begun, holds one round's work whatever its phase: the cost an operator's daemon pays on
average. Each window is checked to have seen a round (the calls the agents answered,
``GET /usage/``'s round count).

Why at once, on one core: measured one after the other, the same daemon's rate moved by up to
48 % between two 15 s windows on this shared machine, far more than the 5 % judged; and load on
the second core slowed a daemon on the first (a 15 % busy loop pinned to core 1 cost B1
unpaused 13 % and 19 % in two pairs), so the agents' answers and the worker's HTTP, which stand
for other machines, counted against the poller-on side alone. So on a machine of two cores or
more both daemons are pinned to core 0, where they share the same moments of the same machine,
and everything else (fake masters, fake agents, the usage worker, the load generators) to core
1. Each has about half a core, so a round's fixed cost weighs twice what it does for a daemon
with a whole core: the comparison leans against the poller.

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
    "b1_paused": (
        ("offers_per_cpu_s", "B1 native paused: offers per daemon CPU second"),
        ("daemon_cpu_percent", "B1 native paused: daemon CPU %"),
    ),
    "b1_unpaused": (
        ("offers_per_cpu_s", "B1 native unpaused: offers per daemon CPU second"),
        ("daemon_cpu_percent", "B1 native unpaused: daemon CPU %"),
    ),
    "b4": (
        ("offers_per_cpu_s", "B4 offers per daemon CPU second"),
        ("daemon_cpu_percent", "B4 daemon CPU %"),
    ),
}
"""Shown beside them, not judged: each daemon's own cost per offer, and its share of the core
the two share."""
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


SIDES = ("off", "on")


def measure_pair(settings: Settings, variant: str, work: Path) -> dict[str, dict[str, Any]]:
    """Two daemons at once, poller off and on, each with its own fake master, both answering
    ``variant``'s load over the same window of ``settings.b7_window`` seconds."""
    work.mkdir(parents=True, exist_ok=True)
    pinned = (os.cpu_count() or 1) >= 2
    started: list[tuple[str, Child, Daemon]] = []  # (side, its master, its daemon)
    masters: list[Child] = []
    agents: dict[str, Child] = {}
    try:
        for side in SIDES:
            place = work / side
            place.mkdir(exist_ok=True)
            # Each side's own agents, so each side's calls are counted (the off side's: none).
            agents[side] = Child([python_for(), "-m", "bench.fake_agents"], place / "agents.log")
            port = int(agents[side].info["port"])
            masters.append(start_master(settings, place, agents_port=port))
            master = masters[-1]
            interval = settings.b7_interval if side == "on" else 0.0
            daemon = start_daemon(place, master.info["url"], usage={"interval": interval})
            started.append((side, master, daemon))
        for _, master, daemon in started:
            daemon.wait(subscribed=True, timeout=60)
            if pinned:
                pin(daemon.pid, DAEMON_CPUS)
                pin(master.pid, OTHER_CPUS)
            if variant == "b1_paused":
                daemon.pause(True)
        if pinned:
            for child in agents.values():
                pin(child.pid, OTHER_CPUS)
        # The first round begins one interval after start-up.
        time.sleep(settings.b7_interval + WARMUP_AFTER_FIRST_ROUND)
        on_daemon = next(daemon for side, _, daemon in started if side == "on")
        if pinned:
            for worker in children(on_daemon.pid):  # the usage worker, started by the round
                pin(worker, OTHER_CPUS)
        rounds_before = _usage_rounds(on_daemon)
        calls_before = {side: _agent_calls(child) for side, child in agents.items()}
        results: dict[str, dict[str, Any]] = {side: {} for side in SIDES}

        def offers(side: str, master: Child, daemon: Daemon) -> None:
            rate = Rate(master.info["url"], {"daemon": daemon.pid, "master": master.pid})
            results[side]["offers"] = rate.measure(settings.b7_window)

        def status_load(side: str, daemon: Daemon) -> None:
            results[side]["load"] = b4_api.load(
                daemon.url + "/status/",
                settings.b7_window,
                work,
                f"status-{side}",
                cpus=OTHER_CPUS if pinned else None,
            )

        threads = [threading.Thread(target=offers, args=(s, m, d)) for s, m, d in started]
        if variant == "b4":
            threads += [threading.Thread(target=status_load, args=(s, d)) for s, _, d in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rounds = _usage_rounds(on_daemon) - rounds_before
        out = {side: _side_result(variant, results[side], pinned) for side in SIDES}
        for side, child in agents.items():
            out[side]["agent_calls"] = _agent_calls(child) - calls_before[side]
        out["on"]["usage_rounds_in_window"] = rounds
        return out
    finally:
        for _, _, daemon in started:
            daemon.stop()
        for child in [*masters, *agents.values()]:
            child.stop()


def _side_result(variant: str, measured: dict[str, Any], pinned: bool) -> dict[str, Any]:
    offers = measured.get("offers", {})
    if variant == "b4":
        result = dict(measured.get("load", {}))
        result["offers_per_s_meanwhile"] = offers.get("offers_per_s")
        rate = result["offers_per_s_meanwhile"]
    else:
        result = dict(offers)
        rate = offers.get("offers_per_s")
    result["cpu_percent"] = offers.get("cpu_percent")
    result["pinned"] = pinned
    daemon_cpu = (offers.get("cpu_percent") or {}).get("daemon")
    result["daemon_cpu_percent"] = daemon_cpu
    if daemon_cpu and rate:
        result["offers_per_cpu_s"] = rate / (daemon_cpu / 100)
    return result


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
        for variant in VARIANTS:
            try:
                row[variant] = measure_pair(
                    settings, variant, settings.work / f"b7-{index}-{variant}"
                )
            except Exception as exc:  # one broken daemon must not lose the whole run
                error = {"error": f"{exc!r}"[:400]}
                row[variant] = {"off": error, "on": error}
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
