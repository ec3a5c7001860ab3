"""Real resource usage in the API: ``GET /usage/``, and the usage parts of nodes, tasks and
metrics, all read from the usage poller's latest complete round (``daemon/usage_poller.py``).

``/usage/`` says how good the numbers are: when the round ended and how old it is, how many
online agents it asked, how many answered, which did not (their usage is unknown, not zero), and
the sums over those that answered (the same as ``/status/``'s ``resources.used``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CONFIG, CORE
from scale_scheduler.daemon.scheduler_core import SchedulerCore
from scale_scheduler.daemon.usage_math import MIB, Usage
from scale_scheduler.daemon.usage_poller import TaskSample, UsagePoller
from scale_scheduler.state.nodes import UsedAmounts
from scale_scheduler.state.tasks import Count, TaskView, Timestamp, iso

_Seconds = Annotated[float, msgspec.Meta(ge=0)]
_Amount = Annotated[float, msgspec.Meta(ge=0)]


class UsageView(msgspec.Struct, forbid_unknown_fields=True):
    """The latest usage round: when, how complete, and the sums over the agents that answered.
    Before the first round (or with usage.interval 0) sampled_at and age_seconds are null and
    used is zeros."""

    enabled: bool
    interval_seconds: _Seconds
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


class TaskDetailView(TaskView, forbid_unknown_fields=True):
    """A task as /tasks/{id}/ shows it: with its real resource usage."""

    usage: TaskUsageView


def poller(app: web.Application) -> UsagePoller | None:
    core = app.get(CORE)
    return core.usage if core is not None else None


def used_amounts(usage: Usage) -> UsedAmounts:
    return UsedAmounts(usage.cpus, usage.mem, usage.disk)


def node_used_by(core: SchedulerCore | None, hostname: str) -> UsedAmounts | None:
    """A node's usage in the latest round; None when unknown."""
    found = core.usage if core is not None else None
    usage = found.node_usage(hostname) if found is not None else None
    return used_amounts(usage) if usage is not None else None


def node_used(app: web.Application, hostname: str) -> UsedAmounts | None:
    return node_used_by(app.get(CORE), hostname)


def _sample(sample: TaskSample) -> UsageSampleView:
    return UsageSampleView(iso(sample.sampled_at) or "", sample.cpus, sample.mem, sample.disk)


def task_detail(app: web.Application, view: TaskView) -> TaskDetailView:
    """``view`` with the task's usage."""
    found = poller(app)
    samples = [_sample(s) for s in found.task_samples(view.id)] if found is not None else []
    usage = TaskUsageView(samples[-1] if samples else None, samples)
    fields = {name: getattr(view, name) for name in view.__struct_fields__}
    return TaskDetailView(**fields, usage=usage)


def usage_view(app: web.Application, now: float) -> UsageView:
    config = app[CONFIG].usage
    found = poller(app)
    latest = found.latest if found is not None else None
    if latest is None:
        return UsageView(
            enabled=found is not None,
            interval_seconds=config.interval,
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
        interval_seconds=config.interval,
        sampled_at=iso(latest.sampled_at),
        age_seconds=round(max(0.0, now - latest.sampled_at), 3),
        round_seconds=round(latest.round_seconds, 3),
        agents_total=latest.agents_total,
        agents_answered=latest.agents_answered,
        agents_unknown=list(latest.agents_unknown),
        used=used_amounts(latest.used),
    )


async def get_usage(request: web.Request) -> web.Response:
    found = poller(request.app)
    now = found.now() if found is not None else 0.0
    return json_response(usage_view(request.app, now))


def usage_metrics(app: web.Application, prefix: str) -> Iterator[Metric]:
    """The usage gauges, read at scrape time. The used figures are left out while unknown."""
    found = poller(app)
    if found is None:
        return
    yield CounterMetricFamily(
        f"{prefix}_usage_rounds", "Usage polling rounds completed.", value=found.rounds
    )
    latest = found.latest
    if latest is None:
        return
    used = found.used()
    if used is not None:
        for name, meaning, value in (
            ("cpus", "CPUs", used.cpus),
            ("memory_bytes", "Memory", used.mem * MIB),
            ("disk_bytes", "Disk", used.disk * MIB),
        ):
            yield GaugeMetricFamily(
                f"{prefix}_cluster_used_{name}",
                f"{meaning} the containers on the agents that answered the latest usage round "
                "really use (every framework).",
                value=value,
            )
    for name, help_text, value in (
        (
            "usage_age_seconds",
            "Seconds since the latest usage round ended.",
            max(0.0, found.now() - latest.sampled_at),
        ),
        (
            "usage_round_duration_seconds",
            "How long the latest usage round took.",
            latest.round_seconds,
        ),
        ("usage_agents", "Online agents the latest usage round asked.", latest.agents_total),
        ("usage_agents_answered", "Agents that answered it.", latest.agents_answered),
        (
            "usage_agents_unknown",
            "Online agents whose usage is unknown: no answer in the latest round.",
            len(latest.agents_unknown),
        ),
    ):
        yield GaugeMetricFamily(f"{prefix}_{name}", help_text, value=value)
