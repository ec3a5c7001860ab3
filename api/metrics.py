"""Prometheus metrics: ``GET /metrics``, request latency, the loop-lag probe.

Each application owns one ``CollectorRegistry`` (never the global one, so several apps in one
process do not clash). Most values are read from live state at scrape time by ``LiveCollector``:
the scheduling core's counters and status snapshot (``CoreFacade``), the Mesos connection
status, the queue and the nodes. Only what has no counter elsewhere is observed as it happens, into
histograms: API request latency (by route template, method and status), database commit time and
group size (``observe_commit``, which ``api.app`` hands to the state's ``on_commit``), and
event-loop lag (a probe task).

Every instance exports its own process's figures (counters since it started, its connection,
its role). The scheduler's state (the pause flag, the tasks by state and the queue depth, the
nodes, the cluster's and the scheduled resources) is the leader's to report, once loaded: a
standby leaves it out (``CoreFacade.reports_scheduler_state``).

This module owns the metric names and their exposition; it changes no scheduling state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from scale_scheduler.api.keys import CORE, PRUNER
from scale_scheduler.api.views_usage import usage_metrics
from scale_scheduler.daemon.scheduling.core_facade import (
    ConnectionState,
    ConnectionStatus,
    CoreCounters,
    CoreFacade,
    CoreUnavailableError,
    NodeState,
    Resources,
    StatusView,
)
from scale_scheduler.state.domain import LAUNCHED, TaskState

PREFIX = "scale_scheduler"
MIB = 1024 * 1024
LOOP_LAG_INTERVAL = 0.5
"""Seconds between two event-loop lag probes."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "unmatched"
STREAM_TYPE = "text/event-stream"
_LIVE_STATES = tuple(s for s in TaskState if s is TaskState.QUEUED or s in LAUNCHED)
_ENDED_STATES = tuple(s for s in TaskState if s.terminal)


class Metrics:
    """One application's registry and the metrics observed as events happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.loop_lag_interval = LOOP_LAG_INTERVAL
        self.last_loop_lag = 0.0
        registry = self.registry
        self.request_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Time to answer an API request, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
        )
        self.commit_duration = Histogram(
            f"{PREFIX}_database_commit_duration_seconds",
            "Time of one group commit (BEGIN to COMMIT) of the state database.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.commit_group_size = Histogram(
            f"{PREFIX}_database_commit_group_size",
            "Writes (API requests, status bursts, offer passes) grouped into one commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            registry=registry,
        )
        self.loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop ran a timer: time the loop was busy or blocked.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self._requests: dict[tuple[str, str, int], Histogram] = {}
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.request_duration.labels(route, method, str(status))
        child.observe(seconds)

    def observe_commit(self, group_size: int, seconds: float) -> None:
        self.commit_duration.observe(seconds)
        self.commit_group_size.observe(group_size)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format the ``Accept`` header asks for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


METRICS = web.AppKey("metrics", Metrics)


# --- values read at scrape time ----------------------------------------------------------------


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class LiveCollector(Collector):
    """Reads the application's live state on every scrape (nothing is copied in between): the
    core's status snapshot and counters (``CoreFacade``), and the pruner's figures."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        core = self._app[CORE]
        counters = core.counters()
        yield from self._leadership(core)
        yield from self._connection(core.connection)
        if core.reports_scheduler_state:
            yield from self._scheduler_state(core.status(), counters)
            yield from self._resources(counters)
        yield from self._core(counters)
        yield from self._flow(counters)
        yield from self._lifecycle(counters)
        yield from usage_metrics(core, PREFIX)
        yield from self._history()

    def _leadership(self, core: CoreFacade) -> Iterator[Metric]:
        try:
            view = core.leader()
        except CoreUnavailableError:  # starting: the election has not run yet
            return
        yield _gauge(
            "leader",
            "1 while this instance leads (the single instance always does), 0 on a standby.",
            float(view.this.role == "leader"),
        )
        yield _gauge(
            "leader_epoch",
            "The epoch of the current leader's term, as this instance last learned it.",
            view.epoch,
        )
        yield _counter(
            "leadership_changes",
            "Times this instance's role changed (became the leader, or stopped being it).",
            core.leadership_changes,
        )

    def _flow(self, counters: CoreCounters) -> Iterator[Metric]:
        """Flow control on launches and the status update pipeline."""
        yield _gauge(
            "tasks_in_flight",
            "Tasks launched and not yet confirmed (LAUNCHING, STAGING, STARTING).",
            counters.in_flight,
        )
        yield _gauge(
            "tasks_in_flight_bound",
            "The current bound on tasks in flight (scheduler.max_in_flight, adapted to the "
            "measured confirmation rate).",
            counters.in_flight_bound,
        )
        yield _gauge(
            "status_update_backlog",
            "Status updates received and not yet acknowledged (queued, being stored, or their "
            "acknowledgement in flight).",
            counters.update_backlog,
        )
        latency = HistogramMetricFamily(
            f"{PREFIX}_status_ack_latency_seconds",
            "Time from a status update's arrival to its acknowledgement's answer.",
        )
        buckets = [(_le(bound), float(count)) for bound, count in counters.ack_latency_buckets]
        latency.add_metric([], buckets or [("+Inf", 0.0)], counters.ack_latency_sum)
        yield latency

    def _lifecycle(self, counters: CoreCounters) -> Iterator[Metric]:
        """Failed attempts by class, delayed retries, late kills, run-time limits enforced."""
        failures = CounterMetricFamily(
            f"{PREFIX}_task_failures",
            "Attempts that ended other than by a success since start, by failure class (task: "
            "the task's own; cluster: agent lost, gone, dropped, preempted; operator: killed "
            "through the API).",
            labels=("class",),
        )
        for name in ("task", "cluster", "operator"):
            failures.add_metric((name,), counters.failures_by_class.get(name, 0))
        yield failures
        yield _counter(
            "retries_delayed",
            "Retries that waited out a retry back-off (after a failure of the task's own).",
            counters.retries_delayed,
        )
        yield _counter(
            "kills_past_grace_period",
            "Kills with a kill_grace_period whose task ended more than 5 s after the grace period.",
            counters.kills_past_grace,
        )
        yield _counter(
            "runtime_limits_enforced",
            "Attempts the daemon itself ended past their max_runtime (the master did not).",
            counters.runtime_limits_enforced,
        )

    def _connection(self, status: ConnectionStatus) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            f"{PREFIX}_mesos_connection_state",
            "State of the connection to the Mesos master: 1 for the current state.",
            labels=("state",),
        )
        for each in ConnectionState:
            state.add_metric((each.value,), 1.0 if status.state is each else 0.0)
        yield state
        yield _gauge(
            "mesos_master_online",
            "1 while the Mesos master answers (subscribed, or refusing with an HTTP status).",
            float(status.master_online),
        )
        yield _counter(
            "mesos_subscriptions",
            "SUBSCRIBED events received (the first registration and every resubscription).",
            status.subscriptions,
        )
        yield _counter(
            "mesos_reconnects",
            "Subscriptions lost and reconnected (stream ended or broke, heartbeats missed, "
            "leader changed).",
            status.reconnects,
        )

    def _scheduler_state(self, status: StatusView, counters: CoreCounters) -> Iterator[Metric]:
        """The scheduler's state: the global pause flag, the tasks and the nodes. The leader's
        to report once it has loaded them (it holds them in memory, as ``/status/`` shows
        them); a standby has none loaded and leaves them out rather than show a stale or empty
        copy, so a query over every instance finds them once, where ``scale_scheduler_leader``
        is 1."""
        yield _gauge(
            "scheduler_paused",
            "1 while the scheduler is paused globally.",
            status.scheduler.is_paused,
        )
        yield _gauge("queue_depth", "Tasks queued, waiting for an offer.", status.queue_depth)
        tasks = GaugeMetricFamily(
            f"{PREFIX}_tasks",
            "Live tasks by state (queued, or holding resources on an agent).",
            labels=("state",),
        )
        for state in _LIVE_STATES:
            if state is TaskState.QUEUED:
                value = counters.queue_depth
            else:
                value = counters.launched.get(state, 0)
            tasks.add_metric((state.value,), value)
        yield tasks
        nodes = GaugeMetricFamily(
            f"{PREFIX}_nodes", "Known nodes (Mesos agents) by state.", labels=("state",)
        )
        for node_state in NodeState:
            nodes.add_metric((node_state.value,), counters.nodes.get(node_state, 0))
        yield nodes

    def _core(self, counters: CoreCounters) -> Iterator[Metric]:
        yield _counter("offers_received", "Offers received from Mesos.", counters.offers_received)
        yield _counter(
            "offers_accepted",
            "Offers used by an ACCEPT that the master took.",
            counters.offers_accepted,
        )
        yield _counter(
            "offers_declined",
            "Offers declined by a DECLINE that the master took.",
            counters.offers_declined,
        )
        yield _counter(
            "offers_rescinded", "RESCIND events received from Mesos.", counters.offers_rescinded
        )
        yield _counter(
            "offer_passes",
            "Offer passes run (each answers every offer pending at its start).",
            counters.offer_passes,
        )
        yield _gauge(
            "offers_suppressed",
            "1 while offers are suppressed (nothing to launch, or paused).",
            float(counters.offers_suppressed),
        )
        yield _counter(
            "task_launches",
            "Tasks launched: carried by an ACCEPT that the master took.",
            counters.launches,
        )
        yield _counter(
            "task_launches_reverted",
            "Launch intents put back in the queue because their ACCEPT could not be sent.",
            counters.launches_reverted,
        )
        yield _counter(
            "task_launches_unconfirmed",
            "Tasks whose ACCEPT had an unknown outcome (timeout, dropped connection, 5xx): kept "
            "launching and reconciled at once instead of requeued.",
            counters.launches_unconfirmed,
        )
        yield _counter(
            "status_updates_stale",
            "Updates for attempts that had already ended: acknowledged, not answered with KILL.",
            counters.status_updates_stale,
        )
        yield _counter(
            "status_updates",
            "Task status updates received from Mesos and handled.",
            counters.status_updates,
        )
        yield _counter(
            "status_acknowledgements",
            "Status updates acknowledged to Mesos (after they were stored).",
            counters.acknowledgements,
        )
        yield _counter(
            "reconciliation_rounds",
            "Reconciliation rounds started (after each SUBSCRIBED, and periodically).",
            counters.reconcile_rounds,
        )
        ended = CounterMetricFamily(
            f"{PREFIX}_tasks_ended",
            "Tasks that reached a terminal state since the daemon started, by state.",
            labels=("state",),
        )
        for state in _ENDED_STATES:
            ended.add_metric((state.value,), counters.ended.get(state, 0))
        yield ended

    def _history(self) -> Iterator[Metric]:
        # The sizes are the pruner's last reading (taken off the loop after each pass), so a
        # scrape never stats a file.
        pruner = self._app.get(PRUNER)
        yield _counter(
            "tasks_pruned",
            "Finished tasks removed by retention (state.retention_days, "
            "state.retention_max_tasks).",
            pruner.pruned if pruner else 0,
        )
        sizes = pruner.sizes if pruner else None
        yield _gauge(
            "database_bytes",
            "Size of the SQLite database file, as of the last pruning pass.",
            sizes.database if sizes else 0,
        )
        yield _gauge(
            "database_wal_bytes",
            "Size of the SQLite write-ahead log, as of the last pruning pass.",
            sizes.wal if sizes else 0,
        )

    def _resources(self, counters: CoreCounters) -> Iterator[Metric]:
        total, scheduled = counters.cluster_total, counters.scheduled
        kinds: list[tuple[str, str, Resources]] = [
            ("scheduled", "held by this framework's tasks", scheduled)
        ]
        if total is not None:
            kinds.insert(0, ("cluster", "of the online agents (total)", total))
        for prefix, meaning, res in kinds:
            yield _gauge(f"{prefix}_cpus", f"CPUs {meaning}.", res.cpus)
            yield _gauge(f"{prefix}_memory_bytes", f"Memory {meaning}.", res.mem * MIB)
            yield _gauge(f"{prefix}_disk_bytes", f"Disk {meaning}.", res.disk * MIB)
            yield _gauge(f"{prefix}_gpus", f"GPUs {meaning}.", res.gpus)


# --- wiring ------------------------------------------------------------------------------------


def setup_metrics(app: web.Application) -> Metrics:
    """Create the app's registry (before start-up, so the middleware finds it)."""
    metrics = Metrics()
    metrics.registry.register(LiveCollector(app))
    app[METRICS] = metrics
    return metrics


def observe_request(request: web.Request, status: int, seconds: float) -> None:
    """Observe one answered request's latency under its route template (bounded label values).

    Called by the edge middleware (``api.edge``), which times every request once for this and
    the access log.
    """
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else _UNMATCHED
    method = request.method if request.method in _METHODS else "OTHER"
    request.app[METRICS].observe_request(route, method, status, seconds)


async def metrics_context(app: web.Application) -> AsyncIterator[None]:
    """Probe the event loop's lag while the app runs (the store's commits are observed
    through the state's ``on_commit``, wired by ``api.app``, which owns the state)."""
    metrics = app[METRICS]
    probe = asyncio.get_running_loop().create_task(_probe_loop_lag(metrics), name="loop-lag")
    try:
        yield
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe


async def _probe_loop_lag(metrics: Metrics) -> None:
    loop = asyncio.get_running_loop()
    while True:
        interval = metrics.loop_lag_interval
        started = loop.time()
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - started - interval)
        metrics.last_loop_lag = lag
        metrics.loop_lag.observe(lag)


async def get_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
