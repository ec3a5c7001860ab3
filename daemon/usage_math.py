"""The arithmetic of real resource usage, from the agents' ``ResourceStatistics`` (pure).

A container's statistics (``include/mesos/v1/mesos.proto``) carry cumulative CPU seconds: the
CPUs in use are the change in ``cpus_user_time_secs + cpus_system_time_secs`` over the change in
``timestamp`` between two samples of the same container, so a container's first sample has no
CPU figure yet. Memory is ``mem_rss_bytes``, else ``mem_total_bytes``; disk is
``disk_used_bytes``, present only on agents running the ``disk/du`` isolator. Memory and disk
are reported in MiB, as the API reports every amount.

This module holds values and functions only: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sample:
    """One container's statistics at one moment (what the arithmetic needs of them)."""

    timestamp: float
    cpu_seconds: float | None
    """User plus system CPU seconds since the container started; None when neither is given."""
    mem_bytes: float | None
    disk_bytes: float | None


def sample_of(
    timestamp: float,
    *,
    cpus_user_time_secs: float | None = None,
    cpus_system_time_secs: float | None = None,
    mem_rss_bytes: float | None = None,
    mem_total_bytes: float | None = None,
    disk_used_bytes: float | None = None,
) -> Sample:
    """A ``Sample`` from ``ResourceStatistics`` fields (absent fields are None)."""
    if cpus_user_time_secs is None and cpus_system_time_secs is None:
        cpu = None
    else:
        cpu = (cpus_user_time_secs or 0.0) + (cpus_system_time_secs or 0.0)
    mem = mem_rss_bytes if mem_rss_bytes is not None else mem_total_bytes
    return Sample(timestamp, cpu, mem, disk_used_bytes)


def cpu_rate(previous: Sample | None, current: Sample) -> float | None:
    """CPUs in use between two samples of one container; None when it cannot be told.

    No figure without a previous sample, when either lacks CPU time, when time did not move
    forward, or when the CPU time went down (the container was replaced under the same id).
    """
    if previous is None or previous.cpu_seconds is None or current.cpu_seconds is None:
        return None
    elapsed = current.timestamp - previous.timestamp
    spent = current.cpu_seconds - previous.cpu_seconds
    if elapsed <= 0 or spent < 0:
        return None
    return spent / elapsed


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """What one container uses: CPUs, memory and disk in MiB; None where not known."""

    cpus: float | None
    mem: float | None
    disk: float | None


def container_usage(previous: Sample | None, current: Sample) -> ContainerUsage:
    mem = current.mem_bytes / MIB if current.mem_bytes is not None else None
    disk = current.disk_bytes / MIB if current.disk_bytes is not None else None
    return ContainerUsage(cpu_rate(previous, current), mem, disk)


@dataclass(frozen=True, slots=True)
class Usage:
    """Summed usage: CPUs, memory and disk in MiB. A container's unknown figure adds nothing."""

    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0

    def rounded(self) -> Usage:
        """Three decimal places (as Mesos keeps resources); no negative zero or float dust."""
        return Usage(_round(self.cpus), _round(self.mem), _round(self.disk))


def _round(value: float) -> float:
    value = round(value, 3)
    return 0.0 if value <= 0 else value


def total(usages: Iterable[ContainerUsage | Usage]) -> Usage:
    """The sum of containers' (or nodes') usage, rounded to three places."""
    cpus = mem = disk = 0.0
    for usage in usages:
        cpus += usage.cpus or 0.0
        mem += usage.mem or 0.0
        disk += usage.disk or 0.0
    return Usage(cpus, mem, disk).rounded()


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """One container as an agent reported it in one round."""

    key: str
    """What identifies the container across rounds on its agent: its container id, or (from
    ``/monitor/statistics``, which has none) its framework and executor ids."""
    framework_id: str
    executor_id: str
    container_id: str | None
    sample: Sample


@dataclass(frozen=True, slots=True)
class RoundUsage:
    """One polling round worked out: per container, per node (every framework), the cluster."""

    containers: dict[str, list[tuple[ContainerReading, ContainerUsage]]]
    """By hostname, for the agents that answered."""
    nodes: dict[str, Usage]
    """By hostname, for the agents that answered."""
    cluster: Usage
    """The sum over the agents that answered."""
    unknown: list[str]
    """Hostnames of the agents that did not answer (sorted)."""
    samples: dict[tuple[str, str], Sample]
    """The samples to compare the next round with, by (hostname, container key)."""


def work_out_round(
    answers: Mapping[str, list[ContainerReading] | None],
    previous: Mapping[tuple[str, str], Sample],
) -> RoundUsage:
    """Usage from one round of ``answers`` (None: the agent did not answer) and the samples
    kept from earlier rounds. An agent that did not answer keeps its earlier samples, so its
    CPU figures resume from them (as an average over the gap) once it answers again; containers
    that are gone from an answering agent are forgotten."""
    containers: dict[str, list[tuple[ContainerReading, ContainerUsage]]] = {}
    nodes: dict[str, Usage] = {}
    unknown: list[str] = []
    samples: dict[tuple[str, str], Sample] = {}
    for hostname, readings in answers.items():
        if readings is None:
            unknown.append(hostname)
            continue
        worked = []
        for reading in readings:
            key = (hostname, reading.key)
            worked.append((reading, container_usage(previous.get(key), reading.sample)))
            samples[key] = reading.sample
        containers[hostname] = worked
        nodes[hostname] = total(usage for _, usage in worked)
    for key, sample in previous.items():
        if key[0] not in containers and key[0] in answers:
            samples[key] = sample  # the agent did not answer: keep its containers' samples
    return RoundUsage(containers, nodes, total(nodes.values()), sorted(unknown), samples)
