"""The pymesos-backed driver: ``SchedulerDriver`` on pymesos's ``MesosSchedulerDriver``.

For sites that run Python 3.10 and want pymesos (``mesos.driver: pymesos``). ``PymesosDriver``
behaves like the native driver: the same FrameworkInfo (``build_framework_info``), credentials,
master detection (``detector_from_config``), framework-id persistence (committed through the
``FrameworkIdStore`` on the first SUBSCRIBED before any later event is dispatched), back-off with
jitter, heartbeat watchdog, ``ConnectionStatus`` and log events; it never sends TEARDOWN except
from ``teardown()``, and stops for good on an ERROR event or a different framework id.

How pymesos is driven (see ``pymesos_client`` for what runs on its threads):

- one ``PymesosClient`` per subscription attempt. Its I/O thread posts events, which reach the
  event loop through ``call_soon_threadsafe`` and are dispatched to the ``EventHandler`` there,
  in stream order. When the attempt ends (connection closed, watchdog, ERROR, leader change,
  ``stop()``) the client is halted, its thread is waited for, and after a back-off a fresh client
  subscribes to the next candidate master with the stored framework id;
- pymesos calls block (one ``http.client`` round trip under pymesos's lock), so they run on a
  dedicated one-thread executor, in the order they were made; halting and starting clients use
  a second one, so a slow call never delays a reconnect decision;
- a failed call raises ``DriverError`` only when it surely took no effect (not subscribed,
  connection refused, answered 3xx/4xx) and ``CallOutcomeUnknownError`` otherwise: pymesos and
  ``http.client`` cannot tell a timeout or a dropped connection before sending from one after.

The scheduling decisions belong to the handler; this module only adapts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import http.client
import random
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog

from scale_scheduler.daemon.backoff import Backoff
from scale_scheduler.daemon.config import Config, ConfigError, MesosConfig
from scale_scheduler.daemon.driver import (
    CallOutcomeUnknownError,
    ConnectionState,
    ConnectionStatus,
    DriverError,
    EventHandler,
    FrameworkIdStore,
    Launch,
    NotConnectedError,
    Subscription,
)
from scale_scheduler.daemon.framework_info import (
    Credentials,
    CredentialsError,
    FrameworkInfo,
    api_url_from_config,
    build_framework_info,
    read_credentials,
)
from scale_scheduler.daemon.master_detector import MasterDetector, detector_from_config
from scale_scheduler.daemon.mesos_types import Subscribed
from scale_scheduler.daemon.pymesos_client import (
    CLOSED,
    CONNECTING,
    ENDED,
    ERROR,
    FAILURE,
    MISMATCH,
    OFFERS,
    RESCIND,
    SUBSCRIBED,
    UPDATE,
    CallRejected,
    PymesosClient,
    http_status_of,
    undo_import_effects,
)

log = structlog.get_logger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 15.0
MAX_REDIRECTS = 5
_STOPPED_REASON = "driver stopped"


@dataclass(frozen=True)
class PymesosSettings:
    """Timing of the adapter (from ``MesosConfig``; tests shorten them)."""

    request_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 15.0
    heartbeat_misses: int = 5
    thread_exit_timeout: float = 5.0
    """How long a halted client's I/O thread is waited for before the adapter moves on."""
    call_idle_close: float = 10.0
    """A call connection idle this long is replaced before the next call."""

    @classmethod
    def from_config(cls, mesos: MesosConfig) -> PymesosSettings:
        return cls(
            request_timeout=mesos.request_timeout,
            backoff_initial=mesos.backoff_initial,
            backoff_max=mesos.backoff_max,
        )


class _Outcome(enum.Enum):
    RETRY = "retry"  # back off, then subscribe again (to the next candidate)
    RETRY_NOW = "retry_now"  # subscribe again at once (the leader changed)
    FATAL = "fatal"  # stop subscribing (ERROR, framework id refused, stop())


Prepare = Callable[[], tuple[FrameworkInfo, Credentials | None]]
ClientFactory = Callable[..., PymesosClient]


@dataclass(eq=False)
class _Session:
    """One client's life, from its start until its I/O thread has ended."""

    base_url: str
    sent_id: str | None
    address: str = ""  # host:port pymesos subscribes to (it follows redirects)
    connections: int = 0  # SUBSCRIBE connections opened (one plus one per redirect)
    client: PymesosClient | None = None
    subscribed: bool = False
    outcome: asyncio.Future[tuple[_Outcome, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[tuple[str, Any]] | None = None  # events held while the framework id is saved
    save_task: asyncio.Task[None] | None = None

    def finish(self, outcome: _Outcome, reason: str) -> bool:
        if self.outcome.done():
            return False
        self.outcome.set_result((outcome, reason))
        return True

    @property
    def finished(self) -> bool:
        return self.outcome.done()


class PymesosDriver:
    """``SchedulerDriver`` through pymesos. Build it with ``create_pymesos_driver``."""

    def __init__(
        self,
        *,
        prepare: Prepare,
        detector: MasterDetector,
        id_store: FrameworkIdStore,
        framework_id: str | None,
        settings: PymesosSettings | None = None,
        rng: random.Random | None = None,
        client_factory: ClientFactory = PymesosClient,
    ) -> None:
        undo_import_effects()
        self.status = ConnectionStatus(framework_id=framework_id, extra={"driver": "pymesos"})
        self.settings = settings or PymesosSettings()
        self._prepare = prepare
        self._detector = detector
        self._id_store = id_store
        self._framework_id = framework_id
        self._id_saved = framework_id is not None
        self._client_factory = client_factory
        self._backoff = Backoff(
            self.settings.backoff_initial, self.settings.backoff_max, rng=rng or random.Random()
        )
        self._handler: EventHandler | None = None
        self._framework_info: FrameworkInfo | None = None
        self._credentials: Credentials | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: ThreadPoolExecutor | None = None
        self._control: ThreadPoolExecutor | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._tearing_down = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_limit = 0.0
        self._watchdog_since = 0.0
        self._logged: tuple[str, str, str | None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        if self._run_task is not None or self._stopping:
            raise RuntimeError("the driver was already started")
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        try:
            self._framework_info, self._credentials = await asyncio.to_thread(self._prepare)
        except Exception as exc:
            self.status.last_error = str(exc)
            log.error("mesos_driver_not_started", error=str(exc))
            raise
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="pymesos-call")
        self._control = ThreadPoolExecutor(1, thread_name_prefix="pymesos-control")
        await self._detector.start(self._on_detector_change)
        self._run_task = self._loop.create_task(self._run(), name="mesos-driver-pymesos")

    async def stop(self) -> None:
        """Halt pymesos and wait for its thread. Never sends TEARDOWN."""
        self._stopping = True
        self._wake.set()
        session = self._session
        if session is not None:
            session.finish(_Outcome.FATAL, _STOPPED_REASON)
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        await self._detector.stop()
        for executor in (self._calls, self._control):
            if executor is not None:
                executor.shutdown(wait=False)
        self.status.master_online = False
        self._set_state(ConnectionState.STOPPED)

    # -- calls ----------------------------------------------------------------------------------

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        offer_ids = [{"value": offer_id} for offer_id in launch.offer_ids]
        tasks = list(launch.tasks)
        filters = {"refuse_seconds": refuse_seconds} if refuse_seconds is not None else None

        def action(client: PymesosClient) -> None:
            client.launchTasks(offer_ids, msgspec.to_builtins(tasks), filters)

        await self._call("ACCEPT", action)

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        if not offer_ids:
            return
        ids = [{"value": offer_id} for offer_id in offer_ids]
        filters = {"refuse_seconds": refuse_seconds} if refuse_seconds is not None else None
        await self._call("DECLINE", lambda client: client.declineOffer(ids, filters))

    async def suppress(self, roles: Sequence[str]) -> None:
        await self._call("SUPPRESS", lambda client: client.suppressOffers(list(roles)))

    async def revive(self, roles: Sequence[str]) -> None:
        await self._call("REVIVE", lambda client: client.reviveOffers(list(roles)))

    async def kill(self, task_id: str, agent_id: str | None = None) -> None:
        # pymesos's killTask drops the agent id; send the call the native driver sends.
        payload: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id is not None:
            payload["agent_id"] = {"value": agent_id}
        await self._call("KILL", lambda client: client.send_call("KILL", payload))

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        status = {"agent_id": {"value": agent_id}, "task_id": {"value": task_id}, "uuid": uuid}
        await self._call("ACKNOWLEDGE", lambda client: client.acknowledgeStatusUpdate(status))

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        # pymesos's reconcileTasks drops the agent ids, which decide the master's answer.
        items: list[dict[str, Any]] = []
        for task_id, agent_id in tasks:
            item: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id is not None:
                item["agent_id"] = {"value": agent_id}
            items.append(item)
        payload = {"tasks": items}
        await self._call("RECONCILE", lambda client: client.send_call("RECONCILE", payload))

    async def teardown(self) -> None:
        """Remove the framework and kill all its tasks, then stop subscribing."""
        log.warning("mesos_teardown_requested", framework_id=self._framework_id)
        # The master closes the stream on TEARDOWN: do not resubscribe meanwhile.
        self._tearing_down = True
        try:
            await self._call("TEARDOWN", lambda client: client.send_call("TEARDOWN", None))
        except BaseException:
            self._tearing_down = False
            self._wake.set()
            raise
        await self.stop()

    async def _call(self, call_type: str, action: Callable[[PymesosClient], None]) -> None:
        session = self._session
        if (
            self.status.state is not ConnectionState.SUBSCRIBED
            or session is None
            or not session.subscribed
            or session.client is None
            or self._calls is None
        ):
            raise NotConnectedError(
                f"{call_type} not sent: no live subscription to a Mesos master "
                f"(state {self.status.state.value})"
            )
        client = session.client
        master = f"{self.status.master_hostname}:{self.status.master_port}"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._calls, client.call, call_type, action)
        except CallRejected as exc:
            log.warning(
                "mesos_call_rejected",
                call=call_type,
                master=master,
                status=exc.status,
                detail=exc.detail,
            )
            if exc.status in (301, 302, 303, 307, 308, 403) and session is self._session:
                session.finish(_Outcome.RETRY, f"{call_type} answered {exc.status}")
            message = f"{call_type} answered HTTP {exc.status} by {master}: {exc.detail}"
            if 300 <= exc.status < 500:
                raise DriverError(message) from None
            # A 5xx (a proxy's, often) does not say whether the master got the call.
            raise CallOutcomeUnknownError(f"{message} (it may have been applied)") from None
        except NotConnectedError:
            raise
        except DriverError as exc:
            # pymesos failed in a way it does not describe: it may have sent the call.
            raise CallOutcomeUnknownError(f"{exc} (it may have been applied)") from None
        except (ConnectionRefusedError, socket.gaierror) as exc:
            # http.client connects before it writes: nothing was sent.
            raise DriverError(f"{call_type} not sent to {master}: {exc!r}") from exc
        except (OSError, http.client.HTTPException) as exc:
            # A timeout, reset or early close: http.client cannot tell before from after sending.
            raise CallOutcomeUnknownError(
                f"{call_type} to {master} failed: {exc!r} (it may have been applied)"
            ) from exc
        except RuntimeError as exc:  # the executor was shut down by stop()
            raise NotConnectedError(f"{call_type} not sent: {exc}") from None

    # -- the subscription loop ------------------------------------------------------------------

    async def _run(self) -> None:
        index = 0
        outcome = _Outcome.RETRY
        while not self._stopping:
            self._wake.clear()
            if self._tearing_down:
                await self._wake.wait()
                continue
            candidates = self._detector.candidates()
            if not candidates:
                self.status.master_online = False
                self.status.last_error = "no leading Mesos master is known"
                self._set_state(ConnectionState.DISCONNECTED)
                log.warning("mesos_no_leader")
                await self._wake.wait()
                continue
            base_url = candidates[index % len(candidates)]
            try:
                outcome, reason = await self._run_session(base_url)
            except Exception as exc:
                log.error("mesos_subscription_crashed", master=base_url, error=repr(exc))
                outcome, reason = _Outcome.RETRY, f"internal error: {exc!r}"
                self.status.last_error = reason
            if outcome is _Outcome.FATAL or self._stopping:
                break
            index += 1
            if outcome is _Outcome.RETRY_NOW or self._wake.is_set():
                continue
            delay = self._backoff.next()
            log.info("mesos_resubscribe_scheduled", delay=round(delay, 3), reason=reason)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        if outcome is _Outcome.FATAL and not self._stopping:
            log.error("mesos_driver_gave_up", reason=self.status.last_error)

    async def _run_session(self, base_url: str) -> tuple[_Outcome, str]:
        assert self._framework_info is not None
        assert self._loop is not None
        session = _Session(base_url=base_url, sent_id=self._framework_id)
        self._set_master(base_url)
        try:
            address = pymesos_address(base_url)
        except ValueError as exc:
            return self._failed(base_url, str(exc), online=False)
        loop = self._loop

        def post(kind: str, payload: Any) -> None:
            # Runs on pymesos's threads; the loop may already be closed at interpreter exit.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._receive, session, kind, payload)

        client = self._client_factory(
            self._framework_info.with_id(self._framework_id).to_dict(),
            address,
            post,
            credentials=self._credentials,
            timeout=self.settings.request_timeout,
            idle_close=self.settings.call_idle_close,
        )
        session.client = client
        self._session = session
        self._set_state(ConnectionState.CONNECTING)
        self._arm_watchdog(self.settings.request_timeout)
        try:
            await loop.run_in_executor(self._control, client.start)
            outcome, reason = await session.outcome
        finally:
            self._disarm_watchdog()
            await self._halt(session)
            if session.save_task is not None:
                await asyncio.wait({session.save_task})
            self._session = None
        self._end_subscription(session, reason)
        return outcome, reason

    async def _halt(self, session: _Session) -> None:
        client = session.client
        assert client is not None
        assert self._loop is not None
        await self._loop.run_in_executor(self._control, client.halt)
        try:
            await asyncio.wait_for(session.ended.wait(), self.settings.thread_exit_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "pymesos_thread_lingering",
                master=session.base_url,
                waited=self.settings.thread_exit_timeout,
            )

    # -- events from pymesos's thread (on the loop) ---------------------------------------------

    def _receive(self, session: _Session, kind: str, payload: Any) -> None:
        if kind == ENDED:
            session.ended.set()
        if session is not self._session or session.finished:
            return
        if session.held is not None:
            session.held.append((kind, payload))
            return
        self._dispatch(session, kind, payload)

    def _dispatch(self, session: _Session, kind: str, payload: Any) -> None:
        handler = self._handler
        assert handler is not None
        try:
            if kind == UPDATE:
                if self._live(session, kind):
                    handler.on_update(payload)
            elif kind == OFFERS:
                if self._live(session, kind):
                    handler.on_offers(payload)
            elif kind == RESCIND:
                if self._live(session, kind):
                    handler.on_rescind(payload)
            elif kind == FAILURE:
                if self._live(session, kind):
                    handler.on_failure(*payload)
            elif kind == CONNECTING:
                self._on_connecting(session, payload)
            elif kind == SUBSCRIBED:
                self._on_subscribed(session, *payload)
            elif kind == ERROR:
                self._on_error_event(session, payload)
            elif kind == MISMATCH:
                self._on_mismatch(session, *payload)
            elif kind == CLOSED:
                self._on_closed(session, payload)
            elif kind == ENDED:
                self._on_thread_ended(session, payload)
        except Exception:
            log.exception("mesos_handler_failed", type=kind)

    def _live(self, session: _Session, kind: str) -> bool:
        if not session.subscribed:
            log.warning("mesos_event_before_subscribed", type=kind, master=session.base_url)
        return session.subscribed

    def _on_connecting(self, session: _Session, address: str) -> None:
        if session.subscribed:
            return
        session.address = address
        session.connections += 1
        self._set_master("http://" + address)
        if session.connections > MAX_REDIRECTS + 1:
            reason = f"more than {MAX_REDIRECTS} redirects"
            self._failed(session.base_url, reason, online=True)
            session.finish(_Outcome.RETRY, reason)
            return
        self._set_state(ConnectionState.CONNECTING)
        self._arm_watchdog(self.settings.request_timeout)

    def _on_subscribed(self, session: _Session, subscribed: Subscribed, address: str) -> None:
        if session.subscribed or session.save_task is not None:
            log.warning("mesos_event_unexpected", type="SUBSCRIBED", master=address)
            return
        framework_id = subscribed.framework_id.value
        interval = subscribed.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
        self._arm_watchdog(interval * self.settings.heartbeat_misses)
        self._framework_id = framework_id
        self.status.framework_id = framework_id
        if self._id_saved:
            self._complete_subscription(session, subscribed, address, interval)
            return
        # Nothing after SUBSCRIBED reaches the handler before the id is committed.
        session.held = []
        assert self._loop is not None
        session.save_task = self._loop.create_task(
            self._save_then_subscribe(session, subscribed, address, interval),
            name="mesos-framework-id-save",
        )

    async def _save_then_subscribe(
        self, session: _Session, subscribed: Subscribed, address: str, interval: float
    ) -> None:
        framework_id = subscribed.framework_id.value
        try:
            await self._id_store.save_framework_id(framework_id)
        except Exception as exc:
            # Kept in memory: the next SUBSCRIBE reuses it and the save is retried.
            log.error("mesos_framework_id_save_failed", framework_id=framework_id, error=repr(exc))
            self.status.last_error = f"cannot store the framework id: {exc!r}"
            session.held = None
            session.finish(_Outcome.RETRY, "cannot store the framework id")
            return
        self._id_saved = True
        log.info("mesos_framework_registered", framework_id=framework_id)
        held, session.held = session.held or [], None
        if session.finished:
            return
        self._complete_subscription(session, subscribed, address, interval)
        for kind, payload in held:
            if session.finished:
                break
            self._dispatch(session, kind, payload)

    def _complete_subscription(
        self, session: _Session, subscribed: Subscribed, address: str, interval: float
    ) -> None:
        session.subscribed = True
        master_info = subscribed.master_info
        self._set_master("http://" + address)
        if master_info is not None:
            host, port = master_info.host_and_port()
            if host:
                self.status.master_hostname, self.status.master_port = host, port
        self.status.master_online = True
        self.status.last_error = None
        self.status.subscriptions += 1
        self._backoff.reset()
        self._set_state(ConnectionState.SUBSCRIBED)
        self._notify(
            "on_subscribed",
            Subscription(
                framework_id=subscribed.framework_id.value,
                heartbeat_interval_seconds=interval,
                master_info=master_info,
                resubscribed=session.sent_id is not None,
            ),
        )

    def _on_error_event(self, session: _Session, message: str) -> None:
        log.error(
            "mesos_error_event",
            message=message,
            master=self._master_text(),
            framework_id=self._framework_id,
        )
        self.status.last_error = f"the master sent ERROR: {message}"
        self._notify("on_error", message)
        session.finish(_Outcome.FATAL, message)

    def _on_mismatch(self, session: _Session, sent: str, received: str) -> None:
        message = (
            f"the master answered SUBSCRIBE for framework {sent} with a different "
            f"framework id {received}; refusing to adopt it"
        )
        log.error("mesos_framework_id_mismatch", sent=sent, received=received)
        self.status.last_error = message
        self._notify("on_error", message)
        session.finish(_Outcome.FATAL, message)

    def _on_closed(self, session: _Session, reason: str) -> None:
        if session.subscribed:
            log.warning("mesos_stream_ended", master=self._master_text())
            self.status.last_error = reason
            session.finish(_Outcome.RETRY, reason)
            return
        self._failed(session.base_url, reason, online=False)
        session.finish(_Outcome.RETRY, reason)

    def _on_thread_ended(self, session: _Session, error: str | None) -> None:
        error = error or "pymesos's I/O thread ended"
        status = http_status_of(error)
        if status == 401:
            message = (
                f"the master at {self._master_text()} rejected the credentials (HTTP 401): "
                "check mesos.principal and mesos.secret_file"
            )
            log.error(
                "mesos_unauthorized",
                master=self._master_text(),
                principal=self._credentials.principal if self._credentials else None,
            )
            self.status.master_online = True
            self.status.last_error = message
            session.finish(_Outcome.RETRY, message)
            return
        _outcome, message = self._failed(session.base_url, error, online=status is not None)
        session.finish(_Outcome.RETRY, message)

    def _failed(self, base_url: str, message: str, *, online: bool) -> tuple[_Outcome, str]:
        log.warning("mesos_subscribe_failed", master=base_url, error=message)
        self.status.master_online = online
        self.status.last_error = f"{self._master_text()}: {message}"
        return _Outcome.RETRY, message

    def _end_subscription(self, session: _Session, reason: str) -> None:
        was_subscribed = session.subscribed
        if was_subscribed:
            self.status.master_online = False
        if self._stopping:
            if was_subscribed:
                self._notify("on_disconnected", reason)
            return
        if was_subscribed:
            self.status.reconnects += 1
        self._set_state(ConnectionState.DISCONNECTED)
        if was_subscribed:
            self._notify("on_disconnected", reason)

    def _on_detector_change(self) -> None:
        self._wake.set()
        session = self._session
        candidates = self._detector.candidates()
        if session is None or session.finished:
            return
        if candidates and candidates[0] in (session.base_url, f"http://{session.address}"):
            return
        session.finish(_Outcome.RETRY_NOW, "the leading master changed")

    def _notify(self, method: str, *args: Any) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            getattr(handler, method)(*args)
        except Exception:
            log.exception("mesos_handler_failed", callback=method)

    # -- watchdog -------------------------------------------------------------------------------

    def _arm_watchdog(self, limit: float) -> None:
        """End the session when no event arrives for ``limit`` seconds."""
        assert self._loop is not None
        self._watchdog_limit = limit
        self._watchdog_since = time.monotonic()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._loop.call_later(limit, self._check_watchdog)

    def _check_watchdog(self) -> None:
        assert self._loop is not None
        self._watchdog = None
        session = self._session
        if session is None or session.finished:
            return
        last_event = session.client.last_event if session.client is not None else 0.0
        due = max(self._watchdog_since, last_event) + self._watchdog_limit
        now = time.monotonic()
        if now < due:
            self._watchdog = self._loop.call_later(due - now, self._check_watchdog)
            return
        reason = f"no event from the master for {self._watchdog_limit:g}s"
        log.warning("mesos_watchdog_expired", master=self._master_text(), reason=reason)
        self.status.last_error = reason
        session.finish(_Outcome.RETRY, reason)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # -- helpers --------------------------------------------------------------------------------

    def _set_master(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.status.master_hostname = parts.hostname or ""
        self.status.master_port = parts.port or 5050

    def _master_text(self) -> str:
        return f"{self.status.master_hostname}:{self.status.master_port}"

    def _set_state(self, state: ConnectionState) -> None:
        self.status.state = state
        master = self._master_text()
        key = (state.value, master, self.status.framework_id)
        if key == self._logged:
            return
        self._logged = key
        log.info(
            "mesos_connection_changed",
            state=state.value,
            master=master,
            framework_id=self.status.framework_id,
            driver="pymesos",
        )


def pymesos_address(base_url: str) -> str:
    """``http://host:port`` -> ``host:port`` as pymesos takes it (raises ``ValueError``).

    pymesos speaks plain HTTP and splits ``host:port`` on the first colon: no https, no IPv6
    literals.
    """
    text = base_url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise ValueError(f"pymesos speaks plain HTTP only, not {parts.scheme}: {base_url}")
    host = parts.hostname or ""
    if not host or ":" in host:
        raise ValueError(f"pymesos cannot reach {base_url}: it takes host:port without IPv6")
    return f"{host}:{parts.port or 5050}"


def _check_masters(master: str) -> None:
    if master.strip().startswith("zk://"):
        return
    for item in master.split(","):
        if item.strip():
            try:
                pymesos_address(item)
            except ValueError as exc:
                raise ConfigError(f"mesos.master: {exc} (mesos.driver: pymesos)") from None


def create_pymesos_driver(
    config: Config,
    framework_id: str | None,
    id_store: FrameworkIdStore,
    *,
    api_url: str,
    detector: MasterDetector | None = None,
    settings: PymesosSettings | None = None,
    rng: random.Random | None = None,
) -> PymesosDriver:
    """The daemon's pymesos driver for ``config``; ``framework_id`` is the stored id, if any.

    Same arguments and FrameworkInfo as ``create_native_driver``. Raises ``ConfigError`` for a
    master pymesos cannot reach (https, IPv6 literal). Call it on the main thread: it restores
    the SIGINT handler pymesos replaced at import.
    """
    mesos = config.mesos
    _check_masters(mesos.master)

    def prepare() -> tuple[FrameworkInfo, Credentials | None]:
        hostname = config.effective_hostname()
        info = build_framework_info(
            config,
            user=config.effective_user(),
            hostname=hostname,
            api_url=api_url or api_url_from_config(config, hostname),
        )
        credentials = read_credentials(mesos)
        if (
            credentials is not None
            and not f"{credentials.principal}:{credentials.secret}".isascii()
        ):
            raise CredentialsError(
                "mesos.secret_file: pymesos sends only ASCII principals and secrets"
            )
        return info, credentials

    return PymesosDriver(
        prepare=prepare,
        detector=detector or detector_from_config(mesos.master, retry_max_delay=mesos.backoff_max),
        id_store=id_store,
        framework_id=framework_id,
        settings=settings or PymesosSettings.from_config(mesos),
        rng=rng,
    )
