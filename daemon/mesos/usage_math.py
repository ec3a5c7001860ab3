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

import msgspec

MIB = 1024 * 1024


class _Value(msgspec.Struct, frozen=True, gc=False):
    """Base of the values below: immutable, and never tracked by the garbage collector (a round
    over thousands of agents makes tens of thousands of them; tracked, they set off full
    collections that held the event loop for tens of milliseconds)."""


class Sample(_Value, frozen=True, gc=False):
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


class ContainerUsage(_Value, frozen=True, gc=False):
    """What one container uses: CPUs, memory and disk in MiB; None where not known."""

    cpus: float | None
    mem: float | None
    disk: float | None


def container_usage(previous: Sample | None, current: Sample) -> ContainerUsage:
    mem = current.mem_bytes / MIB if current.mem_bytes is not None else None
    disk = current.disk_bytes / MIB if current.disk_bytes is not None else None
    return ContainerUsage(cpu_rate(previous, current), mem, disk)


class Usage(_Value, frozen=True, gc=False):
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


class ContainerReading(_Value, frozen=True, gc=False):
    """One container as an agent reported it in one round."""

    key: str
    """What identifies the container across rounds on its agent: its container id, or (from
    ``/monitor/statistics``, which has none) its framework and executor ids."""
    framework_id: str
    executor_id: str
    container_id: str | None
    sample: Sample


@dataclass(frozen=True, slots=True)
class AgentUsage:
    """One agent's answer worked out: per container, and its node's sum (every framework)."""

    containers: list[tuple[ContainerReading, ContainerUsage]]
    node: Usage
    samples: dict[str, Sample]
    """The samples to compare the agent's next answer with, by container key."""


def work_out_agent(readings: list[ContainerReading], previous: Mapping[str, Sample]) -> AgentUsage:
    """Usage from one agent's answer and its samples of the round before; containers that are
    gone from the answer are forgotten."""
    containers = []
    samples = {}
    for reading in readings:
        containers.append((reading, container_usage(previous.get(reading.key), reading.sample)))
        samples[reading.key] = reading.sample
    return AgentUsage(containers, total(usage for _, usage in containers), samples)


@dataclass(frozen=True, slots=True)
class RoundUsage:
    """One polling round worked out: per agent that answered, the cluster, the silent ones."""

    agents: dict[str, AgentUsage]
    """By hostname, the agents that answered."""
    cluster: Usage
    """The sum over the agents that answered."""
    unknown: list[str]
    """Hostnames of the agents that did not answer (sorted)."""
    samples: dict[str, dict[str, Sample]]
    """The samples to compare the next round with, by hostname and container key."""


def close_round(
    answered: Mapping[str, AgentUsage],
    polled: Iterable[str],
    previous: Mapping[str, dict[str, Sample]],
) -> RoundUsage:
    """The round of the agents ``polled``, of which ``answered`` answered. An agent that did
    not answer keeps its earlier samples, so its CPU figures resume from them (as an average
    over the gap) once it answers again; agents no longer polled are forgotten."""
    unknown: list[str] = []
    samples: dict[str, dict[str, Sample]] = {}
    for hostname in polled:
        agent = answered.get(hostname)
        if agent is not None:
            samples[hostname] = agent.samples
        else:
            unknown.append(hostname)
            kept = previous.get(hostname)
            if kept is not None:
                samples[hostname] = kept
    cluster = total(agent.node for agent in answered.values())
    return RoundUsage(dict(answered), cluster, sorted(unknown), samples)


def work_out_round(
    answers: Mapping[str, list[ContainerReading] | None],
    previous: Mapping[str, dict[str, Sample]],
) -> RoundUsage:
    """A whole round at once (None: the agent did not answer); the poller works out each
    agent's answer as it arrives (``work_out_agent``) and closes the round after the last."""
    answered = {
        hostname: work_out_agent(readings, previous.get(hostname, {}))
        for hostname, readings in answers.items()
        if readings is not None
    }
    return close_round(answered, answers, previous)
