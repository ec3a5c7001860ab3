"""Real resource usage in the API: ``GET /usage/``, a task's ``usage`` on ``/tasks/{id}/`` and
the usage metrics, read through the core facade from the usage poller's latest complete round
(``daemon/scheduling/usage_poller.py``, ``daemon/scheduling/usage_views.py``). Nodes carry theirs
in their view.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CORE
from scale_scheduler.daemon.scheduling.core_facade import CoreFacade, TaskUsageView, TaskView

MIB = 1024 * 1024


class TaskDetailView(TaskView, forbid_unknown_fields=True):
    """A task as /tasks/{id}/ shows it: with its real resource usage."""

    usage: TaskUsageView


def task_detail(view: TaskView, usage: TaskUsageView) -> TaskDetailView:
    fields = {name: getattr(view, name) for name in view.__struct_fields__}
    return TaskDetailView(**fields, usage=usage)


async def get_usage(request: web.Request) -> web.Response:
    return json_response(request.app[CORE].usage())


def usage_metrics(core: CoreFacade, prefix: str) -> Iterator[Metric]:
    """The usage gauges, read at scrape time. The used figures are left out while unknown."""
    usage = core.usage()
    if not usage.enabled:
        return
    yield CounterMetricFamily(
        f"{prefix}_usage_rounds", "Usage polling rounds completed.", value=usage.rounds
    )
    if usage.age_seconds is None or usage.round_seconds is None:
        return  # no round yet
    if usage.agents_answered:
        used = usage.used
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
        ("usage_age_seconds", "Seconds since the latest usage round ended.", usage.age_seconds),
        (
            "usage_round_duration_seconds",
            "How long the latest usage round took.",
            usage.round_seconds,
        ),
        ("usage_agents", "Online agents the latest usage round asked.", usage.agents_total),
        ("usage_agents_answered", "Agents that answered it.", usage.agents_answered),
        (
            "usage_agents_unknown",
            "Online agents whose usage is unknown: no answer in the latest round.",
            len(usage.agents_unknown),
        ),
    ):
        yield GaugeMetricFamily(f"{prefix}_{name}", help_text, value=value)
