"""The scheduling core: the driver's ``EventHandler``, tying task path, pipeline and nodes together.

``SchedulerCore(config, store, scheduler_repo, driver, clock)`` loads its state in ``start()``
and runs its background work (offer passes, status bursts, reconciliation, launch timeouts, the
agents' totals) until ``stop()``. The driver callbacks only queue work and return at once.
``start()`` does not start the driver: call ``await driver.start(core)`` after it.

It also serves what ``/status/`` reads (``queue_depth``, ``resource_summary()``), and makes the
operator's flag changes: ``set_paused`` and ``set_node_flags`` commit, apply, then react (the
next offer pass sees the flags; unpausing revives offers). A failing reaction is logged and the
committed change stands. The API reaches all of this through ``daemon.core_facade``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from scale_scheduler.daemon.mesos.agent_usage_api import AgentUsageFetcher
from scale_scheduler.daemon.mesos.driver import SchedulerDriver, Subscription
from scale_scheduler.daemon.mesos.mesos_types import Offer, TaskStatus
from scale_scheduler.daemon.scheduling.offer_pipeline import OfferPipeline
from scale_scheduler.daemon.scheduling.reconciliation_gate import ReconciliationGate
from scale_scheduler.daemon.scheduling.task_path import build_task_path
from scale_scheduler.daemon.scheduling.usage_poller import UsagePoller
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import (
    AgentTotals,
    ClusterAmounts,
    ClusterResources,
    FlagChange,
    Node,
    NodeFlags,
    NodeRepository,
)
from scale_scheduler.state.scheduler import SchedulerRepository, SchedulerSnapshot

log = structlog.get_logger(__name__)

TIMER_INTERVAL = 0.1
"""Seconds between looks at the retry back-offs that end and the run-time limits passed (each
look is a glance at the top of two heaps when nothing is due)."""

AgentsFetcher = Callable[[], Awaitable[list[AgentTotals]]]


class SchedulerCore:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        scheduler_repo: SchedulerRepository,
        driver: SchedulerDriver,
        clock: Callable[[], float] = time.time,
        *,
        fetch_agents: AgentsFetcher | None = None,
        usage_client: AgentUsageFetcher | None = None,
        on_fatal: Callable[[ExitCode, str], None] | None = None,
    ) -> None:
        """``on_fatal(code, message)`` stops the daemon when the driver stops subscribing for
        good (the supervisor's ``fail``: it logs the one ``daemon_fatal`` line).
        ``usage_client`` asks the agents for their usage (with ``usage.interval`` above 0)."""
        self.config = config
        self._settings = config.scheduler
        self._store = store
        self.scheduler = scheduler_repo
        self.driver = driver
        self._clock = clock
        self._fetch_agents = fetch_agents
        self._on_fatal = on_fatal
        self.nodes = NodeRepository(store, clock)
        self._taking_work = False
        self.task_path = build_task_path(
            config.scheduler, store, driver, self.nodes, clock, self._on_work
        )
        self.board = self.task_path.board
        """The live task records and their counters (what the facade and the metrics read)."""
        self.tracker = self.task_path.tracker
        self.intake = self.task_path.intake
        self.reconciler = self.task_path.reconciler
        self.timers = self.task_path.timers
        self.pipeline = OfferPipeline(
            config.scheduler,
            config.mesos.roles,
            store,
            driver,
            self.task_path,
            self.nodes,
            scheduler_repo.state,
            clock,
        )
        self._gate = ReconciliationGate()
        self._gate_timer: asyncio.TimerHandle | None = None
        self.pipeline.launches_held = self._launches_held
        self.usage: UsagePoller | None = None
        if usage_client is not None and config.usage.interval > 0:
            self.usage = UsagePoller(
                config.usage,
                self.nodes,
                self.board.tasks,
                usage_client,
                lambda: driver.status.framework_id,
                clock,
            )
        self._background: list[asyncio.Task[None]] = []
        self._oneshots: set[asyncio.Task[None]] = set()
        self._reconciling: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load nodes and live tasks from the store, then start the background loops."""
        started = time.perf_counter()
        await self.nodes.load()
        await self.tracker.load()
        self._taking_work = True
        self.intake.room_listeners.append(self.pipeline.on_room)
        settings = self._settings
        check = max(0.05, min(settings.launch_timeout / 2, 5.0))
        self._background = [
            self._spawn_loop(self.pipeline.run(), "offer-passes"),
            self._spawn_loop(self.intake.run(), "status-updates"),
            self._spawn_loop(
                self._every(settings.reconcile_interval, self._periodic_reconcile), "reconcile"
            ),
            self._spawn_loop(self._every(check, self.reconciler.check_launch_timeouts), "timeouts"),
            self._spawn_loop(self._every(TIMER_INTERVAL, self.timers.check), "timers"),
        ]
        if self._fetch_agents is not None:
            self._background.append(
                self._spawn_loop(
                    self._every(settings.agents_refresh_interval, self._refresh_quietly), "agents"
                )
            )
        if self.usage is not None:
            self._background.append(self._spawn_loop(self.usage.run(), "usage"))
        self._started = True
        log.info(
            "scheduler_core_started",
            queue_depth=self.board.queue_depth,
            live_tasks=len(self.board.tasks),
            nodes=len(self.nodes.by_id),
            seconds=round(time.perf_counter() - started, 3),
        )

    @property
    def started(self) -> bool:
        """Its state is loaded and its loops run (a leader elected while standing by serves
        its API while it loads)."""
        return self._started

    async def stop(self) -> None:
        """Stop taking work and cancel the background loops (the driver is stopped by its owner)."""
        self._taking_work = False
        with contextlib.suppress(ValueError):
            self.intake.room_listeners.remove(self.pipeline.on_room)
        if self._gate_timer is not None:
            self._gate_timer.cancel()
        tasks = [*self._background, *self._oneshots]
        if self._reconciling is not None:
            tasks.append(self._reconciling)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        await self.pipeline.close()
        await self.intake.acks.close()
        self._started = False

    def _spawn_loop(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=f"core-{name}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._oneshots.add(task)
        task.add_done_callback(self._oneshots.discard)

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background_job_failed", job=getattr(job, "__name__", repr(job)))

    # -- EventHandler ---------------------------------------------------------------------------

    def on_subscribed(self, subscription: Subscription) -> None:
        log.info(
            "scheduler_subscribed",
            framework_id=subscription.framework_id,
            resubscribed=subscription.resubscribed,
            queue_depth=self.board.queue_depth,
        )
        self.pipeline.on_subscribed()
        self._hold_launches_for_reconciliation()
        self.start_reconciliation()
        if self._fetch_agents is not None:
            self._spawn(self._refresh_quietly())

    def on_offers(self, offers: list[Offer]) -> None:
        self.pipeline.add_offers(offers)

    def on_rescind(self, offer_id: str) -> None:
        self.pipeline.rescind(offer_id)

    def on_update(self, status: TaskStatus) -> None:
        self.intake.on_update(status)
        if self._gate.heard(status.task_id.value):
            log.info("launches_released", reason="every launched task was heard of")
            self.pipeline.on_room()
        if self.usage is not None:
            self.usage.note_status(status)

    def backlog_room(self) -> asyncio.Future[None] | None:
        return self.intake.backlog_room()

    def on_failure(self, agent_id: str | None, executor_id: str | None) -> None:
        # A hint only: reconciliation and the tasks' own updates are the truth.
        log.info("mesos_failure", agent_id=agent_id, executor_id=executor_id)
        if agent_id and executor_id is None:
            self.nodes.agent_removed(agent_id)

    def on_error(self, message: str) -> None:
        if self._on_fatal is not None:
            self._on_fatal(ExitCode.FRAMEWORK_REFUSED, message)

    def on_subscription_lost(self, reason: str) -> None:
        if self._on_fatal is not None:
            self._on_fatal(ExitCode.SUBSCRIPTION_LOST, reason)

    def on_disconnected(self, reason: str) -> None:
        log.info("scheduler_disconnected", reason=reason)
        self.pipeline.drop_offers()

    # -- the operator's flags: commit, apply, then react ----------------------------------------

    async def set_paused(self, is_paused: bool) -> SchedulerSnapshot:
        """Set the global pause flag; the answer is the state this write produced."""
        produced = await self.scheduler.set_paused(is_paused)
        if produced.changed:
            self._react("pause_changed", self._pause_changed)
        return produced

    async def set_node_flags(self, node_id: int, change: FlagChange) -> NodeFlags:
        """Change a node's own flags (``NodeNotFoundError`` for an unknown id); the answer is
        the flags this write produced."""
        produced = await self.nodes.update_flags(
            node_id,
            is_paused=change.is_paused,
            pause_reason=change.pause_reason,
            set_reason=change.set_reason,
            is_active=change.is_active,
        )
        node = self.nodes.by_id.get(node_id)
        if node is not None:
            self._react("node_flags_changed", lambda: self._node_changed(node))
        return produced

    def _react(self, change: str, reaction: Callable[[], None]) -> None:
        """Run what must follow a committed change. The change stands whatever happens here:
        a failure is logged once, and the next offer pass still sees the committed flags."""
        try:
            reaction()
        except Exception:
            log.exception("flag_reaction_failed", change=change)

    def _pause_changed(self) -> None:
        # The flag as it is now: a later write may have committed since this one.
        if self.scheduler.state.is_paused:
            self.pipeline.sync_interest()
        else:
            self.pipeline.request_revive()

    def _node_changed(self, node: Node) -> None:
        if not node.blocks_launches:
            self.pipeline.request_revive()

    def _on_work(self) -> None:
        """Tasks were queued or requeued: ask for offers (from start-up until ``stop``)."""
        if self._taking_work:
            self.pipeline.request_revive()

    # -- reconciliation and agents --------------------------------------------------------------

    def _launches_held(self) -> bool:
        return self._gate.holding(asyncio.get_running_loop().time())

    def _hold_launches_for_reconciliation(self) -> None:
        """Launch nothing until Mesos has answered for every task believed launched (a new
        leader's, a restart's), or ``scheduler.reconcile_retry`` x 3 has passed."""
        loop = asyncio.get_running_loop()
        timeout = self._settings.reconcile_retry * 3
        awaited = self._gate.arm(
            (task.mesos_task_id for task in self.reconciler.launched_tasks()), loop.time(), timeout
        )
        if self._gate_timer is not None:
            self._gate_timer.cancel()
            self._gate_timer = None
        if not awaited:
            return
        log.info("launches_held_for_reconciliation", tasks=awaited, timeout=timeout)
        self._gate_timer = loop.call_later(timeout, self._release_after_timeout)

    def _release_after_timeout(self) -> None:
        self._gate_timer = None
        if self._gate.awaiting:
            log.info("launches_released", reason="timeout", unanswered=self._gate.awaiting)
        self._gate.release()
        self.pipeline.on_room()

    def start_reconciliation(self) -> None:
        """Begin a reconciliation round, replacing one still running."""
        if self._reconciling is not None and not self._reconciling.done():
            self._reconciling.cancel()
        self._reconciling = asyncio.get_running_loop().create_task(
            self._reconcile_quietly(), name="core-reconcile-round"
        )

    async def _reconcile_quietly(self) -> None:
        try:
            await self.reconciler.reconcile()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile_round_failed")

    async def _periodic_reconcile(self) -> None:
        if self.driver.status.subscribed:
            self.start_reconciliation()

    async def refresh_agents(self) -> None:
        if self._fetch_agents is None:
            return
        agents = await self._fetch_agents()
        await self.nodes.apply_agents(agents)
        log.debug("agents_refreshed", agents=len(agents))

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh_agents()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("agents_refresh_failed", error=repr(exc))

    # -- what /status/ reads --------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self.board.queue_depth

    def resource_summary(self) -> ClusterResources | None:
        """The cluster's resources; None while no agent's totals are known. ``used`` is the
        latest usage round's sum, zeros while no usage is known (see ``UsagePoller.used``)."""
        total, scheduled = self.nodes.totals()
        if total is None:
            return None
        used = self.usage.used() if self.usage is not None else None
        return ClusterResources(
            total=ClusterAmounts.of(total),
            scheduled=ClusterAmounts.of(scheduled),
            used=ClusterAmounts(used.cpus, used.mem, used.disk)
            if used is not None
            else ClusterAmounts(0.0, 0.0, 0.0),
        )
