"""Real resource usage as the API answers it, built from the usage poller's latest round.

``GET /usage/`` (``UsageView``) says how good the numbers are: when the round ended and how old
it is, how many online agents it asked, how many answered, which did not (their usage is
unknown, not zero), and the sums over those that answered (``/status/``'s ``resources.used``).
``GET /tasks/{id}/`` adds a task's ``TaskUsageView``; a node's view carries its
``UsedAmounts`` (``state.nodes``). The core facade serves these
(``daemon/scheduling/core_facade.py``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from scale_scheduler.daemon.mesos.usage_math import Usage
from scale_scheduler.daemon.scheduling.usage_poller import TaskSample, UsagePoller
from scale_scheduler.state.nodes import UsedAmounts
from scale_scheduler.state.tasks import Count, Timestamp, iso

_Seconds = Annotated[float, msgspec.Meta(ge=0)]
_Amount = Annotated[float, msgspec.Meta(ge=0)]


class UsageView(msgspec.Struct, forbid_unknown_fields=True):
    """The latest usage round: when, how complete, and the sums over the agents that answered.
    Before the first round (or with usage.interval 0) sampled_at, age_seconds and
    round_seconds are null and used is zeros."""

    enabled: bool
    interval_seconds: _Seconds
    rounds: Count
    sampled_at: Timestamp | None
    age_seconds: _Seconds | None
    round_seconds: _Seconds | None
    agents_total: Count
    agents_answered: Count
    agents_unknown: list[str]
    used: UsedAmounts


class UsageSampleView(msgspec.Struct, forbid_unknown_fields=True):
    """A task's usage in one round: CPUs, memory and disk (MiB). A figure is null when its
    agent does not report it (cpus in the container's first round, disk without disk/du)."""

    sampled_at: Timestamp
    cpus: _Amount | None
    mem: _Amount | None
    disk: _Amount | None


class TaskUsageView(msgspec.Struct, forbid_unknown_fields=True):
    """The task's latest usage sample and its last samples (oldest first), of its latest
    attempt; null and empty while none is known."""

    latest: UsageSampleView | None
    samples: list[UsageSampleView]


NO_TASK_USAGE = TaskUsageView(None, [])


def used_amounts(usage: Usage) -> UsedAmounts:
    return UsedAmounts(usage.cpus, usage.mem, usage.disk)


def node_used(poller: UsagePoller | None, hostname: str) -> UsedAmounts | None:
    """A node's usage in the latest round; None when unknown."""
    usage = poller.node_usage(hostname) if poller is not None else None
    return used_amounts(usage) if usage is not None else None


def _sample(sample: TaskSample) -> UsageSampleView:
    return UsageSampleView(iso(sample.sampled_at) or "", sample.cpus, sample.mem, sample.disk)


def task_usage_view(poller: UsagePoller | None, task_id: int) -> TaskUsageView:
    if poller is None:
        return NO_TASK_USAGE
    samples = [_sample(s) for s in poller.task_samples(task_id)]
    return TaskUsageView(samples[-1], samples) if samples else NO_TASK_USAGE


def usage_view(poller: UsagePoller | None, interval: float) -> UsageView:
    latest = poller.latest if poller is not None else None
    if poller is None or latest is None:
        return UsageView(
            enabled=poller is not None,
            interval_seconds=interval,
            rounds=0,
            sampled_at=None,
            age_seconds=None,
            round_seconds=None,
            agents_total=0,
            agents_answered=0,
            agents_unknown=[],
            used=UsedAmounts(0.0, 0.0, 0.0),
        )
    return UsageView(
        enabled=True,
        interval_seconds=interval,
        rounds=poller.rounds,
        sampled_at=iso(latest.sampled_at),
        age_seconds=round(max(0.0, poller.now() - latest.sampled_at), 3),
        round_seconds=round(latest.round_seconds, 3),
        agents_total=latest.agents_total,
        agents_answered=latest.agents_answered,
        agents_unknown=list(latest.agents_unknown),
        used=used_amounts(latest.used),
    )
