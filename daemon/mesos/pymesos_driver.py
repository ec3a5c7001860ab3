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
- back-pressure as in the native driver: when a status update leaves the handler's backlog full
  (``backlog_room``), the session's gate closes and pymesos's I/O thread, which posts each
  update and then waits at the gate, reads nothing more until the handler has room (TCP holds
  the rest at the master). Events pymesos had already read and posted are still handled, so
  the backlog may exceed its limit by what one read brings. pymesos takes no lock while it
  dispatches an event, so acknowledgements (on the call thread) go on meanwhile; the watchdog
  counts the time held as activity, and ending the session opens the gate;
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
import http.client
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog

from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    ConnectionState,
    DriverError,
    EventHandler,
    FrameworkIdStore,
    Launch,
    NotConnectedError,
    acknowledge_each,
)
from scale_scheduler.daemon.mesos.framework_info import Credentials, CredentialsError
from scale_scheduler.daemon.mesos.master_detector import MasterDetector, detector_from_config
from scale_scheduler.daemon.mesos.mesos_types import Subscribed
from scale_scheduler.daemon.mesos.pymesos_client import (
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
from scale_scheduler.daemon.mesos.subscription import (
    MAX_REDIRECTS,
    RESUBSCRIBE_STATUSES,
    STOPPED_REASON,
    Outcome,
    Prepare,
    Result,
    SubscriptionCore,
    SubscriptionSettings,
    Watchdog,
    acknowledge_payload,
    framework_preparer,
    kill_payload,
    offer_id_values,
    reconcile_payload,
    rejected_call_error,
)
from scale_scheduler.daemon.service.config import Config, ConfigError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PymesosSettings(SubscriptionSettings):
    """Timing of the adapter (from ``MesosConfig``; tests shorten them)."""

    thread_exit_timeout: float = 5.0
    """How long a halted client's I/O thread is waited for before the adapter moves on."""
    call_idle_close: float = 10.0
    """A call connection idle this long is replaced before the next call."""


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
    outcome: asyncio.Future[Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[tuple[str, Any]] | None = None  # events held while the framework id is saved
    save_task: asyncio.Task[None] | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    """Open (set) while pymesos's I/O thread may read on; closed for back-pressure."""
    room_task: asyncio.Task[None] | None = None
    """Opens the gate once the handler has room again."""
    resumed: float = 0.0
    """When the gate last opened (loop time): the watchdog's silence starts no earlier."""

    def __post_init__(self) -> None:
        self.gate.set()

    def finish(self, outcome: Outcome, reason: str) -> bool:
        self.gate.set()  # a thread held at the gate must get on to its end
        if self.outcome.done():
            return False
        self.outcome.set_result((outcome, reason))
        return True

    @property
    def holding(self) -> bool:
        return not self.gate.is_set()

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
        may_subscribe: Callable[[], bool] | None = None,
    ) -> None:
        undo_import_effects()
        self.settings = settings or PymesosSettings()
        self._core = SubscriptionCore(
            detector=detector,
            id_store=id_store,
            framework_id=framework_id,
            settings=self.settings,
            rng=rng,
            extra={"driver": "pymesos"},
            may_subscribe=may_subscribe,
        )
        self.status = self._core.status
        self._prepare = prepare
        self._detector = detector
        self._client_factory = client_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: ThreadPoolExecutor | None = None
        self._control: ThreadPoolExecutor | None = None
        self._session: _Session | None = None
        # On the running loop's clock: asyncio's is time.monotonic, which the client's reader
        # thread stamps its events with.
        self._watchdog = Watchdog(None, self._last_event, self._watchdog_expired)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        await self._core.begin(handler, self._prepare)
        self._loop = asyncio.get_running_loop()
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="pymesos-call")
        self._control = ThreadPoolExecutor(1, thread_name_prefix="pymesos-control")
        await self._core.launch(
            self._on_detector_change, self._guarded_session, "mesos-driver-pymesos"
        )

    async def stop(self) -> None:
        """Halt pymesos and wait for its thread. Never sends TEARDOWN."""
        await self._core.halt(self._interrupt_session)
        for executor in (self._calls, self._control):
            if executor is not None:
                executor.shutdown(wait=False)
        self._core.stopped()

    def _interrupt_session(self) -> None:
        session = self._session
        if session is not None:
            session.finish(Outcome.FATAL, STOPPED_REASON)

    # -- calls ----------------------------------------------------------------------------------

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        offer_ids = offer_id_values(launch.offer_ids)
        tasks = list(launch.tasks)
        filters = {"refuse_seconds": refuse_seconds} if refuse_seconds is not None else None

        def action(client: PymesosClient) -> None:
            client.launchTasks(offer_ids, msgspec.to_builtins(tasks), filters)

        await self._call("ACCEPT", action)

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        if not offer_ids:
            return
        ids = offer_id_values(offer_ids)
        filters = {"refuse_seconds": refuse_seconds} if refuse_seconds is not None else None
        await self._call("DECLINE", lambda client: client.declineOffer(ids, filters))

    async def suppress(self, roles: Sequence[str]) -> None:
        await self._call("SUPPRESS", lambda client: client.suppressOffers(list(roles)))

    async def revive(self, roles: Sequence[str]) -> None:
        await self._call("REVIVE", lambda client: client.reviveOffers(list(roles)))

    async def kill(
        self, task_id: str, agent_id: str | None = None, grace_period: float | None = None
    ) -> None:
        # pymesos's killTask drops the agent id; send the call the native driver sends.
        payload = kill_payload(task_id, agent_id, grace_period)
        await self._call("KILL", lambda client: client.send_call("KILL", payload))

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        status = acknowledge_payload(agent_id, task_id, uuid)
        await self._call("ACKNOWLEDGE", lambda client: client.acknowledgeStatusUpdate(status))

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[DriverError | None]:
        # pymesos sends one blocking call at a time on its call thread: one after the other.
        return await acknowledge_each(self.acknowledge, acks)

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        # pymesos's reconcileTasks drops the agent ids, which decide the master's answer.
        payload = reconcile_payload(tasks)
        await self._call("RECONCILE", lambda client: client.send_call("RECONCILE", payload))

    async def teardown(self) -> None:
        """Remove the framework and kill all its tasks, then stop subscribing."""
        await self._core.teardown(
            lambda: self._call("TEARDOWN", lambda client: client.send_call("TEARDOWN", None)),
            self.stop,
        )

    async def _call(self, call_type: str, action: Callable[[PymesosClient], None]) -> None:
        session = self._session
        if (
            self.status.state is not ConnectionState.SUBSCRIBED
            or session is None
            or not session.subscribed
            or session.client is None
            or self._calls is None
        ):
            raise self._core.not_connected(call_type)
        client = session.client
        master = f"{self.status.master_hostname}:{self.status.master_port}"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._calls, client.call, call_type, action)
        except CallRejected as exc:
            error = rejected_call_error(call_type, master, exc.status, exc.detail)
            if exc.status in RESUBSCRIBE_STATUSES and session is self._session:
                session.finish(Outcome.RETRY, f"{call_type} answered {exc.status}")
            raise error from None
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

    async def _guarded_session(self, base_url: str) -> Result:
        try:
            return await self._run_session(base_url)
        except Exception as exc:
            log.error("mesos_subscription_crashed", master=base_url, error=repr(exc))
            reason = f"internal error: {exc!r}"
            self.status.last_error = reason
            return Outcome.RETRY, reason

    async def _run_session(self, base_url: str) -> Result:
        assert self._core.framework_info is not None
        assert self._loop is not None
        session = _Session(base_url=base_url, sent_id=self._core.framework_id)
        self._core.set_master(base_url)
        try:
            address = pymesos_address(base_url)
        except ValueError as exc:
            return self._failed(base_url, str(exc), online=False)
        loop = self._loop

        def post(kind: str, payload: Any) -> None:
            # Runs on pymesos's threads; the loop may already be closed at interpreter exit.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._receive, session, kind, payload)
            if kind == UPDATE:
                session.gate.wait()  # back-pressure: the loop closes the gate when full

        client = self._client_factory(
            self._core.framework_info.with_id(self._core.framework_id).to_dict(),
            address,
            post,
            credentials=self._core.credentials,
            timeout=self.settings.request_timeout,
            idle_close=self.settings.call_idle_close,
        )
        session.client = client
        self._session = session
        self._core.set_state(ConnectionState.CONNECTING)
        self._watchdog.arm(self.settings.request_timeout)
        try:
            await loop.run_in_executor(self._control, client.start)
            outcome, reason = await session.outcome
        finally:
            self._watchdog.disarm()
            session.gate.set()
            if session.room_task is not None:
                session.room_task.cancel()
            await self._halt(session)
            if session.save_task is not None:
                await asyncio.wait({session.save_task})
            self._session = None
        self._core.ended(reason, was_subscribed=session.subscribed)
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
        handler = self._core.handler
        assert handler is not None
        try:
            if kind == UPDATE:
                if self._live(session, kind):
                    handler.on_update(payload)
                    room = handler.backlog_room()
                    if room is not None:
                        self._hold(session, room)
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

    def _hold(self, session: _Session, room: Awaitable[None]) -> None:
        """Close the gate until ``room`` is done (once: a held session is left as it is)."""
        if session.holding or session.finished:
            return
        session.gate.clear()
        log.info("mesos_stream_paused", reason="status update backlog")
        session.room_task = asyncio.get_running_loop().create_task(self._reopen(session, room))

    async def _reopen(self, session: _Session, room: Awaitable[None]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await room
        finally:
            session.resumed = loop.time()
            session.gate.set()
            session.room_task = None
        log.info("mesos_stream_resumed", paused_s=round(loop.time() - started, 3))

    def _live(self, session: _Session, kind: str) -> bool:
        if not session.subscribed:
            log.warning("mesos_event_before_subscribed", type=kind, master=session.base_url)
        return session.subscribed

    def _on_connecting(self, session: _Session, address: str) -> None:
        if session.subscribed:
            return
        session.address = address
        session.connections += 1
        self._core.set_master("http://" + address)
        if session.connections > MAX_REDIRECTS + 1:
            reason = f"more than {MAX_REDIRECTS} redirects"
            self._failed(session.base_url, reason, online=True)
            session.finish(Outcome.RETRY, reason)
            return
        self._core.set_state(ConnectionState.CONNECTING)
        self._watchdog.arm(self.settings.request_timeout)

    def _on_subscribed(self, session: _Session, subscribed: Subscribed, address: str) -> None:
        if session.subscribed or session.save_task is not None:
            log.warning("mesos_event_unexpected", type="SUBSCRIBED", master=address)
            return
        interval = self._core.adopt(subscribed)
        self._watchdog.arm(interval * self.settings.heartbeat_misses)
        if self._core.id_saved:
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
        failure = await self._core.save_framework_id()
        if failure is not None:
            session.held = None
            session.finish(*failure)
            return
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
        self._core.set_master("http://" + address)
        self._core.subscribed(subscribed, interval, resubscribed=session.sent_id is not None)

    def _on_error_event(self, session: _Session, message: str) -> None:
        session.finish(*self._core.error_event(message, self._core.master_text()))

    def _on_mismatch(self, session: _Session, sent: str, received: str) -> None:
        session.finish(*self._core.mismatch(sent, received))

    def _on_closed(self, session: _Session, reason: str) -> None:
        if session.subscribed:
            log.warning("mesos_stream_ended", master=self._core.master_text())
            self.status.last_error = reason
            session.finish(Outcome.RETRY, reason)
            return
        self._failed(session.base_url, reason, online=False)
        session.finish(Outcome.RETRY, reason)

    def _on_thread_ended(self, session: _Session, error: str | None) -> None:
        error = error or "pymesos's I/O thread ended"
        status = http_status_of(error)
        if status == 401:
            master = self._core.master_text()
            session.finish(*self._core.unauthorized(master, master=master))
            return
        _outcome, message = self._failed(session.base_url, error, online=status is not None)
        session.finish(Outcome.RETRY, message)

    def _failed(self, base_url: str, message: str, *, online: bool) -> Result:
        # host:port, as pymesos addresses masters (the native driver names the candidate URL).
        where = self._core.master_text()
        return self._core.failed(message, master=base_url, where=where, online=online)

    def _on_detector_change(self) -> None:
        self._core.wake.set()
        session = self._session
        candidates = self._detector.candidates()
        if session is None or session.finished:
            return
        if candidates and candidates[0] in (session.base_url, f"http://{session.address}"):
            return
        session.finish(Outcome.RETRY_NOW, "the leading master changed")

    # -- watchdog -------------------------------------------------------------------------------

    def _last_event(self) -> float:
        session = self._session
        if session is None or session.client is None:
            return 0.0
        if session.holding:
            # While the reader is held, the silence is ours, not the master's.
            assert self._loop is not None
            return self._loop.time()
        return max(session.client.last_event, session.resumed)

    def _watchdog_expired(self, reason: str) -> None:
        """End the session: no event arrived within the limit."""
        session = self._session
        if session is None or session.finished:
            return
        # Logged here: no mesos_stream_interrupted follows, unlike the native driver's cancel.
        log.warning("mesos_watchdog_expired", master=self._core.master_text(), reason=reason)
        self.status.last_error = reason
        session.finish(Outcome.RETRY, reason)


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


def _check_ascii(credentials: Credentials | None) -> None:
    if credentials is not None and not f"{credentials.principal}:{credentials.secret}".isascii():
        raise CredentialsError("mesos.secret_file: pymesos sends only ASCII principals and secrets")


def create_pymesos_driver(
    config: Config,
    framework_id: str | None,
    id_store: FrameworkIdStore,
    *,
    api_url: str,
    detector: MasterDetector | None = None,
    settings: PymesosSettings | None = None,
    rng: random.Random | None = None,
    client_factory: ClientFactory = PymesosClient,
    may_subscribe: Callable[[], bool] | None = None,
) -> PymesosDriver:
    """The daemon's pymesos driver for ``config``; ``framework_id`` is the stored id, if any.

    Same arguments and FrameworkInfo as ``create_native_driver``. Raises ``ConfigError`` for a
    master pymesos cannot reach (https, IPv6 literal). Call it on the main thread: it restores
    the SIGINT handler pymesos replaced at import.
    """
    mesos = config.mesos
    _check_masters(mesos.master)
    return PymesosDriver(
        prepare=framework_preparer(config, api_url, _check_ascii),
        detector=detector or detector_from_config(mesos.master, retry_max_delay=mesos.backoff_max),
        id_store=id_store,
        framework_id=framework_id,
        settings=settings or PymesosSettings.from_config(mesos),
        rng=rng,
        client_factory=client_factory,
        may_subscribe=may_subscribe,
    )
