"""The transport-free half of a Mesos driver, shared by the native and the pymesos drivers.

Owns what does not depend on how the wire is spoken: the settings both drivers take from
``MesosConfig``, FrameworkInfo and credentials preparation, the outcome of one subscription
attempt, the resubscribe loop with back-off over the detector's candidates and its give-up
deadline (``mesos.give_up_after``), the heartbeat watchdog, framework-id adoption, saving and
mismatch handling, ``ConnectionStatus`` bookkeeping with its ``mesos_connection_changed`` log
event, handler notification, TEARDOWN's guard against resubscribing, how a rejected call's
HTTP status is classified, and the JSON payloads of the calls both drivers build themselves
(KILL, ACKNOWLEDGE, RECONCILE: pymesos's own helpers drop the agent ids).

It does not own any transport: opening the stream, reading events, sending calls and the
exceptions of a particular HTTP client stay in the drivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog

from scale_scheduler.daemon.mesos.backoff import Backoff
from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    ConnectionState,
    ConnectionStatus,
    DriverError,
    EventHandler,
    FrameworkIdStore,
    NotConnectedError,
    Subscription,
)
from scale_scheduler.daemon.mesos.framework_info import (
    Credentials,
    FrameworkInfo,
    api_url_from_config,
    build_framework_info,
    read_credentials,
)
from scale_scheduler.daemon.mesos.give_up import GiveUpDeadline
from scale_scheduler.daemon.mesos.master_detector import MasterDetector
from scale_scheduler.daemon.mesos.mesos_types import Subscribed
from scale_scheduler.daemon.mesos.timer_clock import TimerClock, TimerHandle
from scale_scheduler.daemon.service.config import Config, MesosConfig

log = structlog.get_logger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 15.0
MAX_REDIRECTS = 5
STOPPED_REASON = "driver stopped"
# Call answers that mean the subscription is gone or lives elsewhere: subscribe again.
RESUBSCRIBE_STATUSES = frozenset({301, 302, 303, 307, 308, 403})

S = TypeVar("S", bound="SubscriptionSettings")


@dataclass(frozen=True)
class SubscriptionSettings:
    """Timing both drivers share (from ``MesosConfig``; tests shorten them)."""

    request_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 15.0
    heartbeat_misses: int = 5
    give_up_after: float = 0.0
    """Seconds without a subscription before the resubscribe loop ends for good; 0: never."""

    @classmethod
    def from_config(cls: type[S], mesos: MesosConfig) -> S:
        return cls(
            request_timeout=mesos.request_timeout,
            backoff_initial=mesos.backoff_initial,
            backoff_max=mesos.backoff_max,
            give_up_after=mesos.give_up_after,
        )


class Outcome(enum.Enum):
    RETRY = "retry"  # back off, then subscribe again (to the next candidate)
    RETRY_NOW = "retry_now"  # subscribe again at once (the leader changed)
    FATAL = "fatal"  # stop subscribing (ERROR event, framework id refused, gave up, stop())


Result = tuple[Outcome, str]
Prepare = Callable[[], tuple[FrameworkInfo, Credentials | None]]


def framework_preparer(
    config: Config,
    api_url: str,
    check: Callable[[Credentials | None], None] | None = None,
) -> Prepare:
    """A blocking ``prepare()`` building the FrameworkInfo and reading the credentials.

    ``check`` may refuse credentials a transport cannot send (by raising).
    """

    def prepare() -> tuple[FrameworkInfo, Credentials | None]:
        hostname = config.effective_hostname()
        info = build_framework_info(
            config,
            user=config.effective_user(),
            hostname=hostname,
            api_url=api_url or api_url_from_config(config, hostname),
        )
        credentials = read_credentials(config.mesos)
        if check is not None:
            check(credentials)
        return info, credentials

    return prepare


def offer_id_values(offer_ids: Iterable[str]) -> list[dict[str, str]]:
    return [{"value": offer_id} for offer_id in offer_ids]


def kill_payload(
    task_id: str, agent_id: str | None, grace_period: float | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"task_id": {"value": task_id}}
    if agent_id is not None:
        payload["agent_id"] = {"value": agent_id}
    if grace_period is not None:
        payload["kill_policy"] = {"grace_period": {"nanoseconds": round(grace_period * 1e9)}}
    return payload


def acknowledge_payload(agent_id: str, task_id: str, uuid: str) -> dict[str, Any]:
    return {"agent_id": {"value": agent_id}, "task_id": {"value": task_id}, "uuid": uuid}


def reconcile_payload(tasks: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    return {"tasks": [kill_payload(task_id, agent_id) for task_id, agent_id in tasks]}


def rejected_call_error(call_type: str, master: str, status: int, detail: str) -> DriverError:
    """Log a call the master answered with a non-2xx ``status``; the exception to raise."""
    log.warning("mesos_call_rejected", call=call_type, master=master, status=status, detail=detail)
    message = f"{call_type} answered HTTP {status} by {master}: {detail}"
    if 300 <= status < 500:
        return DriverError(message)
    # A 5xx (often from a proxy or load balancer in front of the master) does not say
    # whether the master got the call.
    return CallOutcomeUnknownError(f"{message} (it may have been applied)")


class Watchdog:
    """Calls ``expired(reason)`` once no activity was seen for ``limit`` seconds after ``arm``.

    ``last_activity`` reads the ``clock`` time of the latest event (it may be older than the
    arming, which counts as activity). ``clock`` defaults to the loop running ``arm``.
    """

    def __init__(
        self,
        clock: TimerClock | None,
        last_activity: Callable[[], float],
        expired: Callable[[str], None],
    ) -> None:
        self._clock = clock
        self._last_activity = last_activity
        self._expired = expired
        self._limit = 0.0
        self._since = 0.0
        self._timer: TimerHandle | None = None
        self._armed_on: TimerClock | None = None

    def arm(self, limit: float) -> None:
        clock = self._clock or asyncio.get_running_loop()
        self._armed_on = clock
        self._limit = limit
        self._since = clock.time()
        self.disarm()
        self._timer = clock.call_later(limit, self._check)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        clock = self._armed_on
        assert clock is not None
        self._timer = None
        due = max(self._since, self._last_activity()) + self._limit
        now = clock.time()
        if now < due:
            self._timer = clock.call_later(due - now, self._check)
            return
        self._expired(f"no event from the master for {self._limit:g}s")


class SubscriptionCore:
    """State and steps of a framework's subscription that both drivers share."""

    def __init__(
        self,
        *,
        detector: MasterDetector,
        id_store: FrameworkIdStore,
        framework_id: str | None,
        settings: SubscriptionSettings,
        rng: random.Random | None,
        extra: dict[str, str] | None = None,
        may_subscribe: Callable[[], bool] | None = None,
    ) -> None:
        """``extra`` names the driver in ``status.extra`` and in connection log events.
        ``may_subscribe`` is asked before every SUBSCRIBE, the first and each resubscription:
        once it says no (this instance no longer leads), the loop ends without subscribing."""
        self.status = ConnectionStatus(framework_id=framework_id, extra=dict(extra or {}))
        self.framework_id = framework_id
        self.id_saved = framework_id is not None
        self.backoff = Backoff(
            settings.backoff_initial, settings.backoff_max, rng=rng or random.Random()
        )
        self.handler: EventHandler | None = None
        self.framework_info: FrameworkInfo | None = None
        self.credentials: Credentials | None = None
        self.wake = asyncio.Event()
        self.stopping = False
        self.tearing_down = False
        self.detector = detector
        self._give_up_after = settings.give_up_after
        self._may_subscribe = may_subscribe
        self._id_store = id_store
        self._run_task: asyncio.Task[None] | None = None
        self._log_fields = dict(extra or {})
        self._logged: tuple[str, str, str | None] | None = None

    def not_connected(self, call_type: str) -> NotConnectedError:
        return NotConnectedError(
            f"{call_type} not sent: no live subscription to a Mesos master "
            f"(state {self.status.state.value})"
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def begin(self, handler: EventHandler, prepare: Prepare) -> None:
        """The first step of a driver's ``start()``: FrameworkInfo and credentials."""
        if self._run_task is not None or self.stopping:
            raise RuntimeError("the driver was already started")
        self.handler = handler
        stored = await self._id_store.load_framework_id()
        if stored is not None and stored != self.framework_id:
            log.info("mesos_framework_id_loaded", framework_id=stored, built_with=self.framework_id)
            self.framework_id = stored
            self.status.framework_id = stored
            self.id_saved = True
        # User and host name lookups and the secret file are blocking: off the loop.
        try:
            self.framework_info, self.credentials = await asyncio.to_thread(prepare)
        except Exception as exc:
            self.status.last_error = str(exc)
            # At info: raised to the caller, which reports it (the daemon: daemon_fatal).
            log.info("mesos_driver_not_started", error=str(exc))
            raise

    async def launch(
        self, on_change: Callable[[], None], attempt: Callable[[str], Awaitable[Result]], name: str
    ) -> None:
        """The last step of ``start()``: watch the detector and run the resubscribe loop."""
        await self.detector.start(on_change)
        self._run_task = asyncio.get_running_loop().create_task(self._run(attempt), name=name)

    async def halt(self, interrupt: Callable[[], None]) -> None:
        """The first step of ``stop()``: ``interrupt`` ends the live attempt."""
        self.stopping = True
        self.wake.set()
        interrupt()
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        await self.detector.stop()

    def stopped(self) -> None:
        """The last step of ``stop()``, once the transport is closed."""
        self.status.master_online = False
        self.set_state(ConnectionState.STOPPED)

    # -- the resubscribe loop -------------------------------------------------------------------

    async def _run(self, attempt: Callable[[str], Awaitable[Result]]) -> None:
        """Subscribe to the detector's candidates in turn until an attempt is fatal, the
        give-up deadline passes without a subscription, or stop."""
        deadline = GiveUpDeadline(self._give_up_after, asyncio.get_running_loop().time)
        index = 0
        outcome = Outcome.RETRY
        while not self.stopping:
            self.wake.clear()
            if self.tearing_down:
                await self.wake.wait()
                continue
            if deadline.expired:
                outcome, _ = self.give_up(deadline.limit)
                break
            candidates = self.detector.candidates()
            if not candidates:
                self.status.master_online = False
                self.status.last_error = "no leading Mesos master is known"
                self.set_state(ConnectionState.DISCONNECTED)
                log.warning("mesos_no_leader")
                await self._sleep(deadline.bound(None))
                continue
            if self._may_subscribe is not None and not self._may_subscribe():
                # A deposed leader's SUBSCRIBE would fail the new leader's subscription over.
                self.status.last_error = "SUBSCRIBE not sent: this instance does not lead"
                log.warning("mesos_subscribe_withheld", reason=self.status.last_error)
                outcome = Outcome.FATAL
                break
            subscriptions = self.status.subscriptions
            outcome, reason = await attempt(candidates[index % len(candidates)])
            if self.status.subscriptions != subscriptions:
                deadline.restart()  # a subscription ended just now
            if outcome is Outcome.FATAL or self.stopping:
                break
            index += 1
            if outcome is Outcome.RETRY_NOW or self.wake.is_set():
                continue
            delay = self.backoff.next()
            log.info("mesos_resubscribe_scheduled", delay=round(delay, 3), reason=reason)
            await self._sleep(deadline.bound(delay))
        if outcome is Outcome.FATAL and not self.stopping:
            # The handler was told why (on_error, on_subscription_lost): the daemon logs it.
            log.info("mesos_driver_gave_up", reason=self.status.last_error)

    async def _sleep(self, seconds: float | None) -> None:
        """Until ``wake`` is set, or ``seconds`` (``None``: no limit) have passed."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    async def teardown(
        self, send: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
    ) -> None:
        log.warning("mesos_teardown_requested", framework_id=self.framework_id)
        # The master closes the stream on TEARDOWN: do not resubscribe meanwhile.
        self.tearing_down = True
        try:
            await send()
        except BaseException:
            self.tearing_down = False
            self.wake.set()
            raise
        await stop()

    # -- subscription outcomes ------------------------------------------------------------------

    def adopt(self, subscribed: Subscribed) -> float:
        """Take the framework id of a SUBSCRIBED; its heartbeat interval."""
        framework_id = subscribed.framework_id.value
        self.framework_id = framework_id
        self.status.framework_id = framework_id
        return subscribed.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS

    async def save_framework_id(self) -> Result | None:
        """Commit the adopted framework id once; a RETRY result when it cannot be stored."""
        framework_id = self.framework_id
        if self.id_saved or framework_id is None:
            return None
        try:
            await self._id_store.save_framework_id(framework_id)
        except Exception as exc:
            # Kept in memory: the next SUBSCRIBE reuses it and the save is retried.
            log.error("mesos_framework_id_save_failed", framework_id=framework_id, error=repr(exc))
            self.status.last_error = f"cannot store the framework id: {exc!r}"
            return Outcome.RETRY, "cannot store the framework id"
        self.id_saved = True
        log.info("mesos_framework_registered", framework_id=framework_id)
        return None

    def subscribed(self, subscribed: Subscribed, interval: float, *, resubscribed: bool) -> None:
        """The subscription is live: status, back-off and the handler's ``on_subscribed``."""
        master_info = subscribed.master_info
        if master_info is not None:
            host, port = master_info.host_and_port()
            if host:
                self.status.master_hostname, self.status.master_port = host, port
        self.status.master_online = True
        self.status.last_error = None
        self.status.subscriptions += 1
        self.backoff.reset()
        self.set_state(ConnectionState.SUBSCRIBED)
        self.notify(
            "on_subscribed",
            Subscription(
                framework_id=subscribed.framework_id.value,
                heartbeat_interval_seconds=interval,
                master_info=master_info,
                resubscribed=resubscribed,
            ),
        )

    def mismatch(self, sent: str, received: str) -> Result:
        message = (
            f"the master answered SUBSCRIBE for framework {sent} with a different "
            f"framework id {received}; refusing to adopt it"
        )
        log.info("mesos_framework_id_mismatch", sent=sent, received=received)
        self.status.last_error = message
        self.notify("on_error", message)
        return Outcome.FATAL, message

    def error_event(self, message: str, master: str) -> Result:
        # At info: the handler makes it the daemon's one fatal error line (daemon_fatal).
        log.info(
            "mesos_error_event", message=message, master=master, framework_id=self.framework_id
        )
        self.status.last_error = f"the master sent ERROR: {message}"
        self.notify("on_error", message)
        return Outcome.FATAL, message

    def give_up(self, limit: float) -> Result:
        """No subscription for ``limit`` seconds: stop trying, tell the handler why."""
        message = (
            f"no subscription to a Mesos master for {limit:g}s (mesos.give_up_after); "
            f"last error: {self.status.last_error or 'none'}"
        )
        self.status.last_error = message
        self.notify("on_subscription_lost", message)
        return Outcome.FATAL, message

    def unauthorized(self, where: str, **fields: Any) -> Result:
        message = (
            f"the master at {where} rejected the credentials (HTTP 401): "
            "check mesos.principal and mesos.secret_file"
        )
        principal = self.credentials.principal if self.credentials else None
        log.error("mesos_unauthorized", principal=principal, **fields)
        self.status.master_online = True
        self.status.last_error = message
        return Outcome.RETRY, message

    def failed(self, message: str, *, master: str, where: str, online: bool) -> Result:
        """A SUBSCRIBE that did not succeed; ``where`` prefixes ``status.last_error``."""
        log.warning("mesos_subscribe_failed", master=master, error=message)
        self.status.master_online = online
        self.status.last_error = f"{where}: {message}"
        return Outcome.RETRY, message

    def ended(self, reason: str, *, was_subscribed: bool) -> None:
        """An attempt is over: status, state and the handler's ``on_disconnected``."""
        if was_subscribed:
            self.status.master_online = False
        if self.stopping:
            if was_subscribed:
                self.notify("on_disconnected", reason)
            return
        if was_subscribed:
            self.status.reconnects += 1
        self.set_state(ConnectionState.DISCONNECTED)
        if was_subscribed:
            self.notify("on_disconnected", reason)

    # -- status ---------------------------------------------------------------------------------

    def notify(self, method: str, *args: Any) -> None:
        handler = self.handler
        if handler is None:
            return
        try:
            getattr(handler, method)(*args)
        except Exception:
            log.exception("mesos_handler_failed", callback=method)

    def set_master(self, url: str) -> None:
        parts = urlsplit(url)
        self.status.master_hostname = parts.hostname or ""
        self.status.master_port = parts.port or 5050

    def master_text(self) -> str:
        return f"{self.status.master_hostname}:{self.status.master_port}"

    def set_state(self, state: ConnectionState) -> None:
        self.status.state = state
        master = self.master_text()
        key = (state.value, master, self.status.framework_id)
        if key == self._logged:
            return
        self._logged = key
        log.info(
            "mesos_connection_changed",
            state=state.value,
            master=master,
            framework_id=self.status.framework_id,
            **self._log_fields,
        )
