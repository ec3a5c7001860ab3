"""What a simulated task really uses, and the ``ResourceStatistics`` its container reports.

Each task uses a share of what it reserved: ``task_cpu_usage``, ``task_mem_usage`` and
``task_disk_usage`` of ``SimConfig`` (fractions), or absolute figures from its labels
``sim.cpus_used`` (CPUs), ``sim.mem_used`` and ``sim.disk_used`` (MiB). The statistics follow
``ResourceStatistics`` in ``include/mesos/v1/mesos.proto``: CPU time accumulates from the task's
start (80 % user, 20 % system), the limits include the command executor's own 0.1 CPU and 32 MiB
(as the agent adds them), and ``disk_used_bytes`` is there only with the ``disk/du`` isolator
(``disk_usage_isolation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scale_scheduler.simulator.config import SimConfig

MIB = 1024 * 1024
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM_MIB = 32.0
USER_SHARE = 0.8


class UsageError(ValueError):
    """A ``sim.*_used`` label that is not a non-negative number."""


@dataclass(frozen=True, slots=True)
class TaskUsage:
    cpus: float
    mem_mib: float
    disk_mib: float

    @classmethod
    def of(cls, info: dict[str, Any], reserved: dict[str, float], config: SimConfig) -> TaskUsage:
        """From the task's labels, else its reservation times the configured shares."""
        labels: dict[str, str] = {}
        for label in (info.get("labels") or {}).get("labels") or []:
            if isinstance(label, dict) and isinstance(label.get("key"), str):
                labels[label["key"]] = str(label.get("value", ""))

        def pick(label: str, share: float, name: str) -> float:
            text = labels.get(label)
            if text is None:
                return reserved.get(name, 0.0) * share
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"simulator script: {label} must be a number") from None
            if not value >= 0 or value == float("inf"):
                raise UsageError(f"simulator script: {label} must be >= 0")
            return value

        return cls(
            cpus=pick("sim.cpus_used", config.task_cpu_usage, "cpus"),
            mem_mib=pick("sim.mem_used", config.task_mem_usage, "mem"),
            disk_mib=pick("sim.disk_used", config.task_disk_usage, "disk"),
        )


def container_statistics(
    usage: TaskUsage,
    reserved: dict[str, float],
    started: float,
    now: float,
    disk_isolation: bool,
) -> dict[str, Any]:
    """``ResourceStatistics`` of a task's container at wall time ``now``."""
    cpu_seconds = usage.cpus * max(0.0, now - started)
    stats: dict[str, Any] = {
        "timestamp": now,
        "processes": 1,
        "threads": 1,
        "cpus_user_time_secs": round(cpu_seconds * USER_SHARE, 6),
        "cpus_system_time_secs": round(cpu_seconds * (1 - USER_SHARE), 6),
        "cpus_limit": round(reserved.get("cpus", 0.0) + EXECUTOR_CPUS, 6),
        "mem_rss_bytes": int(usage.mem_mib * MIB),
        "mem_total_bytes": int(usage.mem_mib * MIB),
        "mem_limit_bytes": int((reserved.get("mem", 0.0) + EXECUTOR_MEM_MIB) * MIB),
    }
    disk = reserved.get("disk", 0.0)
    if disk_isolation:
        if disk > 0:
            stats["disk_limit_bytes"] = int(disk * MIB)
        stats["disk_used_bytes"] = int(usage.disk_mib * MIB)
    return stats
