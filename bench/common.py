"""What every scenario shares: the run's settings, free ports, fake-master counters, statistics.

``Settings.full()`` and ``Settings.quick()`` hold every size and duration of a run, so the report
can state them. ``Rate`` reads the fake master's counters twice and turns them into offers/s.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Settings:
    quick: bool
    rounds: int
    b1_warmup: float
    b1_seconds: float
    b2_tasks: int
    b2_agents: int
    b2_task_duration: float
    b2_deadline: float
    b3_tasks: int
    b3_match_repeats: int
    b4_seconds: float
    profile: bool
    calibration_seconds: float
    b6_tasks: int = 1_000_000
    b6_deadline: float = 3600.0
    b5_kills: int = 20
    b5_stops: int = 3
    work: Path = Path()
    out: Path = Path()
    b7_interval: float = 15.0
    """B7's ``usage.interval`` with the poller on (the daemon's default)."""
    b7_window: float = 15.0
    """B7's measured window: one interval holds one round's work whatever its phase."""
    b7_rounds: int = 4
    """B7's on/off pairs per variant; the targets judge the median of their ratios (on a
    shared machine one pair moves by more than the 5 % judged)."""
    only: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
    usage_interval: float | None = None
    """``--usage-interval``: B1's and B4's daemons poll the agents' usage this often, from
    the fake master, which then serves every recorded agent's GET_CONTAINERS (None: the
    daemon's default, whose first round comes after the measured windows)."""

    def usage_config(self) -> dict[str, float] | None:
        return None if self.usage_interval is None else {"interval": self.usage_interval}

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            rounds=5,
            b1_warmup=1.5,
            b1_seconds=4.0,
            b2_tasks=100_000,
            b2_agents=2000,
            b2_task_duration=1.0,
            b2_deadline=240.0,
            b3_tasks=1_000_000,
            b3_match_repeats=2000,
            b4_seconds=4.0,
            profile=True,
            calibration_seconds=1.0,
        )

    @classmethod
    def quick_mode(cls) -> Settings:
        return cls(
            quick=True,
            rounds=1,
            b1_warmup=0.7,
            b1_seconds=1.5,
            b2_tasks=5_000,
            b2_agents=100,
            b2_task_duration=1.0,
            b2_deadline=45.0,
            b3_tasks=30_000,
            b3_match_repeats=200,
            b4_seconds=1.5,
            profile=False,
            calibration_seconds=0.5,
            b6_tasks=20_000,
            b6_deadline=120.0,
            b5_kills=4,
            b5_stops=1,
            b7_interval=1.0,
            b7_window=1.0,
            b7_rounds=1,
        )

    @property
    def offers_path(self) -> Path:
        return self.out / "offers.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    import os

    return ticks / os.sysconf("SC_CLK_TCK")


class Rate:
    """Offers answered (declined or accepted) per second at a fake master, over a window."""

    def __init__(self, master_url: str, pids: dict[str, int]) -> None:
        self.url = master_url + "/bench/stats"
        self.pids = pids

    def _sample(self) -> tuple[dict[str, Any], dict[str, float], float]:
        stats = get_json(self.url)
        cpus = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return stats, cpus, time.monotonic()

    def measure(self, seconds: float) -> dict[str, Any]:
        first, cpu0, t0 = self._sample()
        time.sleep(seconds)
        last, cpu1, t1 = self._sample()
        elapsed = last["now"] - first["now"]
        answered = (last["offers_declined"] + last["offers_accepted"]) - (
            first["offers_declined"] + first["offers_accepted"]
        )
        return {
            "offers_per_s": answered / elapsed,
            "offers": answered,
            "seconds": elapsed,
            "cpu_percent": {
                name: 100 * (cpu1[name] - cpu0[name]) / (t1 - t0) for name in self.pids
            },
            "calls": last["calls"],
            "agent_calls": last.get("agent_calls", 0) - first.get("agent_calls", 0),
        }


def num(value: Any, digits: int = 0) -> str:
    """A figure for the report: thousands separated, ``digits`` decimals, ``n/a`` if missing."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def summary(values: list[float]) -> dict[str, float]:
    """min / median / max of repeated measurements."""
    clean = [v for v in values if v == v]
    if not clean:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan"), "n": 0}
    return {
        "min": min(clean),
        "median": statistics.median(clean),
        "max": max(clean),
        "n": len(clean),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]
