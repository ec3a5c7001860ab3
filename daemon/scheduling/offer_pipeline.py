"""The offer pipeline: every offer is accepted or declined in the pass it arrives in.

One pass, in Marathon's order:
1. take every pending offer (rescinded ones are already gone);
2. match (pure), within the task path's launch budget (flow control: tasks launched but not yet
   confirmed are bounded; offers left over at the bound are declined with no filter, never
   suppressed, and revived once updates are handled and launches may go again); if the matcher
   raises, decline
   everything without a filter so offers come back;
3. persist the launch intents (tasks marked LAUNCHING, new nodes, last offer times) in ONE commit;
4. send one ACCEPT per agent carrying all its launches, and one DECLINE per filter length
   carrying many offer ids, concurrently;
5. revert the tasks of any ACCEPT that surely took no effect (or whose offer was rescinded while
   the intent was being committed) to the queue; the tasks of an ACCEPT whose outcome is unknown
   (``CallOutcomeUnknownError``: it may have been applied) stay LAUNCHING and are reconciled at
   once, so the master's answer, not a guess, decides whether they launch again.

Passes run one at a time; offers that arrive during a pass are handled by the next one, so a
burst of OFFERS events costs one commit. One ``offer_pass`` log event summarises each pass.

Offer interest: SUPPRESS when nothing is queued or the scheduler is paused; REVIVE (at most once
per ``revive_interval``, a later request waits for the interval) when work is queued, on unpause
and on node unpause. The pipeline owns offers in flight and the suppressed flag; task state
belongs to the task tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    DriverError,
    Launch,
    SchedulerDriver,
)
from scale_scheduler.daemon.mesos.mesos_types import (
    CommandInfo,
    Environment,
    EnvironmentVariable,
    KillPolicy,
    Label,
    Labels,
    Offer,
    TaskInfo,
    Value,
    duration_info,
)
from scale_scheduler.daemon.scheduling.launch_plans import (
    LaunchPlan,
    PlannedTask,
    finish_launches,
    release_launches,
)
from scale_scheduler.daemon.scheduling.matcher import (
    DeclineReason,
    MatchResult,
    MatchSettings,
    match,
)
from scale_scheduler.daemon.scheduling.offer_nodes import NodeObserver
from scale_scheduler.daemon.scheduling.task_path import TaskPath
from scale_scheduler.daemon.service.config import SchedulerConfig
from scale_scheduler.state.changes import Change
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.scheduler import SchedulerState
from scale_scheduler.state.tasks import spec_decoder

log = structlog.get_logger(__name__)

LAST_OFFER_FLUSH_SECONDS = 60.0
FLOW_REFUSE_SECONDS = 0.0
"""Filter on offers declined at the launch bound (``scheduler.max_in_flight``): none. Mesos
installs no filter for 0, so the agents are offered again in the next allocation cycle. Any
other filter lasts at least one allocation interval (Mesos's allocator stretches it so that it
never expires before the next allocation, MESOS-4302): the 0.5 s filter used before kept the
declined agents out of the next cycle, and the cluster sat idle for up to two intervals with
work queued."""
FLOW_REVIVE_INTERVAL = 0.25
"""Least seconds between two REVIVEs asking for offers back once flow control lets launches
go again (``revive_interval`` paces the others). Offers come back only with a REVIVE or Mesos's
next allocation cycle, so this paces the waves of launches: each pass launches the room there
is, and a wave's updates arrive, are stored and acknowledged together, so the first of its
tasks finishes only once most of the wave has moved through each state. With 0.5 s the
pipeline emptied between waves (B6: nearly half the passes that launched found nothing in
flight) and waves of 4,000 launched into it took over a second to finish their first task:
the gaps without a finished task reached 2.4 s."""
FLOW_REVIVE_ROOM = 0.25
"""Share of what one pass may launch at most that must be free before such a REVIVE: a new wave
starts while the previous one is still in flight, smaller and sooner (at a half, the room came
only once a wave had nearly finished)."""


def build_task_info(item: PlannedTask, agent_id: str) -> TaskInfo:
    """The Mesos TaskInfo of one planned launch (resources already shaped by the matcher)."""
    spec = spec_decoder.decode(item.task.spec)
    variables = [EnvironmentVariable(k, v) for k, v in (spec.env or {}).items()]
    ports = item.placement.ports
    if ports:
        variables.extend(EnvironmentVariable(f"PORT{i}", str(p)) for i, p in enumerate(ports))
        variables.append(EnvironmentVariable("PORTS", ",".join(str(p) for p in ports)))
    environment = Environment(variables) if variables else None
    container = None
    if spec.image:
        container = {
            "type": "MESOS",
            "mesos": {"image": {"type": "DOCKER", "docker": {"name": spec.image}}},
        }
    if spec.command is not None:
        command = CommandInfo(value=spec.command, shell=True, environment=environment)
    else:
        command = CommandInfo(shell=False, environment=environment)
    labels = None
    if spec.labels:
        labels = Labels([Label(k, v) for k, v in spec.labels.items()])
    return TaskInfo(
        name=spec.name,
        task_id=Value(item.mesos_task_id),
        agent_id=Value(agent_id),
        resources=list(item.placement.resources),
        command=command,
        container=container,
        labels=labels,
        kill_policy=(
            KillPolicy(duration_info(spec.kill_grace_period))
            if spec.kill_grace_period is not None
            else None
        ),
        max_completion_time=(
            duration_info(spec.max_runtime) if spec.max_runtime is not None else None
        ),
    )


@dataclass
class PassStats:
    offers: int = 0
    agents: int = 0
    accepted: int = 0
    launched: int = 0
    reverted: int = 0
    unconfirmed: int = 0
    """Tasks of ACCEPTs whose outcome is unknown: kept LAUNCHING and reconciled."""
    declined: int = 0
    rescinded: int = 0
    waiting_groups: int = 0
    decline_reasons: dict[str, int] = field(default_factory=dict)
    flow: dict[str, int] = field(default_factory=dict)
    """Flow control as the pass saw it: ``budget`` (launches it allowed), ``in_flight``,
    ``bound``, ``backlog`` and ``backlog_limit`` (empty when flow control is off)."""
    phase_ms: dict[str, float] = field(default_factory=dict)
    """Where the pass's time went: ``match``, ``commit`` (the launch intents, waiting for the
    store's writer included) and ``calls`` (the ACCEPTs and DECLINEs answered)."""

    def add(self, other: PassStats) -> None:
        """Accumulate another pass's counts (the reasons are left out)."""
        self.offers += other.offers
        self.agents += other.agents
        self.accepted += other.accepted
        self.launched += other.launched
        self.reverted += other.reverted
        self.unconfirmed += other.unconfirmed
        self.declined += other.declined
        self.rescinded += other.rescinded
        self.waiting_groups += other.waiting_groups


class OfferPipeline:
    def __init__(
        self,
        config: SchedulerConfig,
        roles: Sequence[str],
        store: StateStore,
        driver: SchedulerDriver,
        tasks: TaskPath,
        nodes: NodeRepository,
        scheduler: SchedulerState,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._roles = list(roles)
        self._store = store
        self._driver = driver
        self._tasks = tasks
        self._board = tasks.board
        self._tracker = tasks.tracker
        self._nodes = nodes
        self._scheduler = scheduler
        self._clock = clock
        self._settings = MatchSettings(
            config.refuse_seconds, config.idle_refuse_seconds, FLOW_REFUSE_SECONDS
        )
        self._pending: dict[str, Offer] = {}
        self._in_flight: dict[str, Offer] = {}
        """The offers of the running pass, by id."""
        self._answered: set[str] = set()
        self._rescinded: set[str] = set()
        self._ready = asyncio.Event()
        self._last_offer_flush = 0.0
        self.suppressed = False
        self._last_revive = -float("inf")
        self._revive_timer: asyncio.TimerHandle | None = None
        self._interest_tasks: set[asyncio.Task[None]] = set()
        self._flow_held = False
        """Offers were declined for flow control since the last REVIVE (set once the pass's
        DECLINEs are answered): once handled updates free room, they are asked back at once. A
        later pass that declines none (a few offers of agents whose tasks ended, say) does not
        clear it: the agents declined before are still away until the next allocation cycle."""
        self.launches_held: Callable[[], bool] = lambda: False
        """True while launches wait (for reconciliation after a subscription: the core's)."""
        self._last_flow_revive = -float("inf")
        self._flow_revive_timer: asyncio.TimerHandle | None = None
        self._interest_lock = asyncio.Lock()
        self._observer = NodeObserver(nodes)
        self.passes = 0
        self.last_pass: PassStats | None = None
        # Read by the metrics at scrape time.
        self.offers_received = 0
        self.rescinds_received = 0
        self.totals = PassStats()
        """Every pass's counts added up since start."""

    # -- events from the driver -----------------------------------------------------------------

    def add_offers(self, offers: Sequence[Offer]) -> None:
        self.offers_received += len(offers)
        for offer in offers:
            self._pending[offer.id.value] = offer
        if offers:
            self._ready.set()

    def rescind(self, offer_id: str) -> None:
        self.rescinds_received += 1
        if self._pending.pop(offer_id, None) is not None:
            log.info("offer_rescinded", offer_id=offer_id, in_pass=False)
        elif offer_id in self._in_flight:
            self._rescinded.add(offer_id)
            log.info("offer_rescinded", offer_id=offer_id, in_pass=True)

    def drop_offers(self) -> None:
        """The subscription ended: every outstanding offer is void."""
        self._pending.clear()
        self._rescinded.update(self._in_flight)

    def on_subscribed(self) -> None:
        """A new subscription starts unsuppressed; state our interest again."""
        self.suppressed = False
        self._pending.clear()
        self.sync_interest()

    def footprint(self) -> dict[str, int]:
        """Sizes of what the pipeline holds: offers, never tasks (a pass's launch plan lives
        only as long as the pass)."""
        return {
            "pending_offers": len(self._pending),
            "offers_in_pass": len(self._in_flight),
            "answered_offers": len(self._answered),
            "rescinded_offers": len(self._rescinded),
            "interest_calls": len(self._interest_tasks),
        }

    # -- the pass loop --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("offer_pass_failed")

    async def run_pass(self) -> PassStats | None:
        """Handle every pending offer once. Returns the pass's counters (None if no offers)."""
        pending = self._pending
        if not pending:
            return None
        self._pending = {}
        offers = list(pending.values())
        started = time.perf_counter()
        now = self._clock()
        stats = PassStats(offers=len(offers))
        self._in_flight = pending
        self._rescinded = set()
        self._answered = set()
        try:
            await self._pass(offers, now, stats)
        except Exception:
            # A bug, not a Mesos refusal: still never hold an offer.
            log.exception("offer_pass_failed", offers=len(offers))
            left = [o.id.value for o in offers if o.id.value not in self._answered]
            await self._decline(left, None, stats, "PASS_FAILED")
        finally:
            self._in_flight = {}
            self._board.index.compact()
            self.passes += 1
            self.last_pass = stats
            self.totals.add(stats)
            log.info(
                "offer_pass",
                offers=stats.offers,
                agents=stats.agents,
                launched=stats.launched,
                reverted=stats.reverted,
                unconfirmed=stats.unconfirmed,
                declined=stats.declined,
                rescinded=stats.rescinded,
                decline_reasons=stats.decline_reasons,
                flow=stats.flow,
                waiting_groups=stats.waiting_groups,
                phase_ms=stats.phase_ms,
                queue_depth=self._board.queue_depth,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
            self.sync_interest()
            if DeclineReason.FLOW_CONTROL.value in stats.decline_reasons:
                # Only now, with the DECLINEs answered: a REVIVE sent while the pass held these
                # offers (room freed as it committed) left them declined after it, and nothing
                # asked for them again until Mesos's next allocation cycle.
                self._flow_held = True
                self.on_room()
        return stats

    async def _pass(self, offers: list[Offer], now: float, stats: PassStats) -> None:
        seen = self._observer.observe(offers, now)
        if seen.malformed:
            bad = {o.id.value for o in seen.malformed}
            offers = [o for o in offers if o.id.value not in bad]
            await self._decline(list(bad), self._config.idle_refuse_seconds, stats, "MALFORMED")
        node_changes, node_apply = seen.changes, seen.apply
        generation = self._board.index.generation
        budget = 0 if self.launches_held() else self._tasks.launch_budget()
        if budget is not None:
            stats.flow = {
                "budget": budget,
                "in_flight": self._board.in_flight,
                "bound": self._tasks.in_flight_bound(),
                "backlog": self._tasks.intake.backlog,
                "backlog_limit": self._tasks.flow.backlog_limit(now),
            }
        started = time.perf_counter()
        try:
            result = match(
                offers,
                self._board.index,
                scheduler_paused=self._scheduler.is_paused,
                blocked_hosts=seen.blocked,
                settings=self._settings,
                launch_budget=budget,
                placement=self._nodes.placement,
                avoid=self._board.failed_hosts.by_task,
            )
        except Exception:
            log.exception("offer_match_failed", offers=len(offers))
            await self._decline([o.id.value for o in offers], None, stats, "MATCH_FAILED")
            return
        stats.agents = seen.agents
        stats.waiting_groups = len(result.waiting)
        stats.phase_ms["match"] = _ms_since(started)
        if any(d.reason is DeclineReason.FLOW_CONTROL for d in result.declines):
            self._tasks.flow.held_back(now)
        self._board.record_waiting(result.waiting)

        plan = self._tracker.plan_launch(result.launches, now) if result.launches else None
        changes: list[Change] = list(node_changes)
        if plan is not None or now - self._last_offer_flush >= LAST_OFFER_FLUSH_SECONDS:
            flush = self._nodes.last_offers(self._observer.offering_nodes(seen.hosts))
            if flush is not None:
                changes.append(flush)
                self._last_offer_flush = now
        if plan is not None:
            changes.append(plan.change)
        if changes:
            plan_apply = plan.apply if plan is not None else None

            def apply() -> None:
                node_apply()
                if plan_apply is not None:
                    plan_apply()

            committing = time.perf_counter()
            try:
                await self._store.commit(changes, apply)
                stats.phase_ms["commit"] = _ms_since(committing)
            except Exception as exc:
                log.error("launch_intent_failed", error=repr(exc))
                doomed = release_launches(plan) if plan is not None else []
                await self._decline([o.id.value for o in offers], None, stats, "INTENT_FAILED")
                await self._tracker.cancel_all(doomed)
                return
        await self._send(
            result, plan, stats, queue_changed=generation != self._board.index.generation
        )

    async def _send(
        self,
        result: MatchResult,
        plan: LaunchPlan | None,
        stats: PassStats,
        *,
        queue_changed: bool = False,
    ) -> None:
        try:
            await self._answer(result, plan, stats, queue_changed=queue_changed)
        finally:
            if plan is not None:
                # Always: a task left busy would be skipped by the matcher and the launch timeout.
                kills, cancels = finish_launches(plan)
                if kills:
                    await self._tasks.calls.kill(kills)
                if cancels:
                    await self._tracker.cancel_all(cancels)

    async def _answer(
        self,
        result: MatchResult,
        plan: LaunchPlan | None,
        stats: PassStats,
        *,
        queue_changed: bool = False,
    ) -> None:
        rescinded = self._rescinded
        accepts: list[tuple[list[PlannedTask], Launch]] = []
        dropped: list[PlannedTask] = []
        declines: dict[float | None, list[str]] = {}
        if plan is not None:
            for agent_launch, planned in plan.agents:
                gone = rescinded.intersection(agent_launch.offer_ids)
                if gone:
                    dropped.extend(planned)
                    stats.rescinded += len(gone)
                    continue
                try:
                    infos = [build_task_info(item, agent_launch.agent_id) for item in planned]
                except Exception:
                    log.exception("task_info_failed", agent_id=agent_launch.agent_id)
                    dropped.extend(planned)
                    declines.setdefault(None, []).extend(agent_launch.offer_ids)
                    continue
                accepts.append((planned, Launch(agent_launch.offer_ids, infos)))
        for decline in result.declines:
            if rescinded:
                ids = [oid for oid in decline.offer_ids if oid not in rescinded]
                stats.rescinded += len(decline.offer_ids) - len(ids)
            else:
                ids = list(decline.offer_ids)
            if ids:
                # Tasks queued while this pass awaited its commit were not matched against these
                # offers, and their REVIVE may already be out: a filter now would hide the offers
                # from them. Decline with none, so the agent is offered again next cycle.
                refuse = (
                    0.0
                    if queue_changed and _queue_based(decline.reason)
                    else decline.refuse_seconds
                )
                declines.setdefault(refuse, []).extend(ids)
                reason = decline.reason.value
                stats.decline_reasons[reason] = stats.decline_reasons.get(reason, 0) + len(ids)
        for _planned, launch in accepts:
            self._answered.update(launch.offer_ids)
        for ids in declines.values():
            self._answered.update(ids)
        calls = [
            self._driver.accept(launch, self._config.refuse_seconds) for _planned, launch in accepts
        ]
        calls += [self._driver.decline(ids, refuse) for refuse, ids in declines.items()]
        calling = time.perf_counter()
        results = await asyncio.gather(*calls, return_exceptions=True)
        stats.phase_ms["calls"] = _ms_since(calling)
        failed: list[PlannedTask] = list(dropped)
        unconfirmed: list[PlannedTask] = []
        for (planned, launch), outcome in zip(accepts, results[: len(accepts)], strict=True):
            if isinstance(outcome, BaseException):
                # Only a sure failure may be reverted: an ACCEPT the master may have applied,
                # relaunched under a new id, could start the same work twice.
                unknown = isinstance(outcome, CallOutcomeUnknownError)
                log.warning(
                    "accept_failed",
                    offers=len(launch.offer_ids),
                    tasks=len(planned),
                    outcome="unknown" if unknown else "not_applied",
                    error=repr(outcome),
                )
                (unconfirmed if unknown else failed).extend(planned)
            else:
                stats.accepted += len(launch.offer_ids)
                stats.launched += len(planned)
        for outcome, ids in zip(results[len(accepts) :], declines.values(), strict=True):
            if isinstance(outcome, BaseException):
                log.warning("decline_failed", offers=len(ids), error=repr(outcome))
            else:
                stats.declined += len(ids)
        if unconfirmed:
            # The intent stands (the tasks stay LAUNCHING); the master's answer decides.
            stats.unconfirmed = len(unconfirmed)
            await self._tasks.reconciler.reconcile_launches(unconfirmed)
        if failed:
            stats.reverted = len(failed)
            try:
                await self._tracker.revert(failed, "accept not sent")
            except Exception as exc:
                # The intent stands; the launch timeout reconciles these tasks and relaunches.
                log.error("launch_revert_failed", tasks=len(failed), error=repr(exc))

    async def _decline(
        self, offer_ids: list[str], refuse_seconds: float | None, stats: PassStats, reason: str
    ) -> None:
        ids = [oid for oid in offer_ids if oid not in self._rescinded]
        self._answered.update(ids)
        if not ids:
            return
        try:
            await self._driver.decline(ids, refuse_seconds)
            stats.declined += len(ids)
            stats.decline_reasons[reason] = stats.decline_reasons.get(reason, 0) + len(ids)
        except DriverError as exc:
            log.warning("decline_failed", offers=len(ids), error=repr(exc))

    # -- offer interest: SUPPRESS and REVIVE -----------------------------------------------------

    def wants_offers(self) -> bool:
        return not self._scheduler.is_paused and self._board.queue_depth > 0

    def sync_interest(self) -> None:
        """Suppress when nothing can be launched; revive (rate-limited) when work waits."""
        wants = self.wants_offers()
        if not wants and not self.suppressed:
            self.suppressed = True
            self._spawn(self._call("suppress"))
        elif wants and self.suppressed:
            self.request_revive()

    def on_room(self) -> None:
        """Updates were handled: if offers were declined for flow control and a pass could
        now launch ``FLOW_REVIVE_ROOM`` of what one may launch at most, ask for offers back at
        once (or, within ``FLOW_REVIVE_INTERVAL`` of the last such REVIVE, once it has
        passed)."""
        if not self._flow_held or self.suppressed or not self.wants_offers():
            return
        if self._flow_revive_timer is not None:
            return
        wait = self._last_flow_revive + FLOW_REVIVE_INTERVAL - self._clock()
        if wait > 0:
            # Deferred, not dropped: the wave that frees the room may have been handled in
            # full by then, and no later update would ask again (offers came back only with
            # Mesos's next allocation cycle while the cluster sat idle).
            loop = asyncio.get_running_loop()
            self._flow_revive_timer = loop.call_later(wait, self._flow_revive_later)
            return
        self._revive_for_room()

    def _flow_revive_later(self) -> None:
        self._flow_revive_timer = None
        if self._flow_held and not self.suppressed and self.wants_offers():
            self._revive_for_room()

    def _revive_for_room(self) -> None:
        budget = self._tasks.launch_budget()
        now = self._clock()
        if budget is not None:
            # At most: the bound on tasks in flight, or a pass's share of the backlog limit
            # when that is smaller (against the bound alone, the room would never be free
            # enough, and offers came back only with Mesos's next allocation cycle).
            most = self._tasks.flow.most(now)
            if budget < most * FLOW_REVIVE_ROOM:
                return
        self._flow_held = False
        self._last_flow_revive = now
        self._spawn(self._call("revive"))

    def request_revive(self) -> None:
        """Revive now, or once ``revive_interval`` after the previous revive."""
        if not self.wants_offers():
            return
        if self._revive_timer is not None:
            return
        wait = self._last_revive + self._config.revive_interval - self._clock()
        if wait <= 0:
            self._revive_now()
            return
        loop = asyncio.get_running_loop()
        self._revive_timer = loop.call_later(wait, self._revive_later)

    def _revive_later(self) -> None:
        self._revive_timer = None
        if self.wants_offers():
            self._revive_now()

    def _revive_now(self) -> None:
        self._last_revive = self._clock()
        self.suppressed = False
        self._spawn(self._call("revive"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._interest_tasks.add(task)
        task.add_done_callback(self._interest_tasks.discard)

    async def _call(self, kind: str) -> None:
        # The lock wakes waiters in FIFO order, so calls reach the driver in the order decided.
        async with self._interest_lock:
            try:
                if kind == "suppress":
                    await self._driver.suppress(self._roles)
                    log.info("offers_suppressed", roles=self._roles)
                else:
                    await self._driver.revive(self._roles)
                    log.info(
                        "offers_revived", roles=self._roles, queue_depth=self._board.queue_depth
                    )
            except DriverError as exc:
                log.warning("offer_interest_failed", call=kind, error=str(exc))
                # Unknown state at the master: state the interest again on the next change.
                self.suppressed = kind == "revive"

    async def close(self) -> None:
        for timer in (self._revive_timer, self._flow_revive_timer):
            if timer is not None:
                timer.cancel()
        self._revive_timer = self._flow_revive_timer = None
        for task in list(self._interest_tasks):
            task.cancel()
        for task in list(self._interest_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _queue_based(reason: DeclineReason) -> bool:
    """Declines decided from the queue's contents (not from a pause flag)."""
    return reason in (DeclineReason.QUEUE_EMPTY, DeclineReason.NOTHING_FITS)
