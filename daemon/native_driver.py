"""The native asyncio Mesos driver: a v1 HTTP scheduler API client on aiohttp.

``NativeDriver`` implements ``SchedulerDriver``. A background task finds the leading master
(through a ``MasterDetector``), SUBSCRIBEs (following 307 redirects), reads the RecordIO event
stream and calls the ``EventHandler`` synchronously, in stream order, on the loop. It
resubscribes with exponential back-off and jitter when the stream ends or breaks, when no event
(heartbeats included) arrives for ``heartbeat_misses`` heartbeat intervals, when the leader
changes, or when a call is answered 403. It stops for good on an ERROR event (reported through
``handler.on_error``) and on ``stop()``, which never sends TEARDOWN.

The framework id is committed through the ``FrameworkIdStore`` on the first SUBSCRIBED before
any other event is dispatched, and every later SUBSCRIBE carries it; a master answering with a
different id is treated as fatal rather than silently adopted.

Calls (ACCEPT, DECLINE, ...) go through one pooled aiohttp session to the master holding the
subscription, with its ``Mesos-Stream-Id``; they raise ``NotConnectedError`` while no
subscription is live, ``DriverError`` when the call surely took no effect (the connection could
not be made, or the master answered 3xx/4xx), and ``CallOutcomeUnknownError`` when it may have
(timed out once sent, connection lost before the answer, answered 5xx).

This module is the only one that knows wire JSON, ``Mesos-Stream-Id`` and the call shapes; the
scheduling decisions belong to the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import msgspec
import structlog

from scale_scheduler.daemon.backoff import Backoff
from scale_scheduler.daemon.config import Config, MesosConfig
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
    FrameworkInfo,
    api_url_from_config,
    build_framework_info,
    read_credentials,
)
from scale_scheduler.daemon.master_detector import (
    MasterDetector,
    detector_from_config,
    normalize_master_url,
)
from scale_scheduler.daemon.mesos_types import Event, decode_event
from scale_scheduler.daemon.recordio import RecordIOError, RecordReader

log = structlog.get_logger(__name__)

SCHEDULER_PATH = "/api/v1/scheduler"
DEFAULT_HEARTBEAT_SECONDS = 15.0
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class DriverSettings:
    """Timing and size limits of the driver (from ``MesosConfig``; tests shorten them)."""

    request_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 15.0
    max_record_bytes: int = 64 * 1024 * 1024
    max_call_connections: int = 16
    heartbeat_misses: int = 5

    @classmethod
    def from_config(cls, mesos: MesosConfig) -> DriverSettings:
        return cls(
            request_timeout=mesos.request_timeout,
            backoff_initial=mesos.backoff_initial,
            backoff_max=mesos.backoff_max,
            max_record_bytes=mesos.max_record_bytes,
            max_call_connections=mesos.max_call_connections,
        )


class _Outcome(enum.Enum):
    RETRY = "retry"  # back off, then subscribe again (to the next candidate)
    RETRY_NOW = "retry_now"  # subscribe again at once (the leader changed)
    FATAL = "fatal"  # stop subscribing (ERROR event, framework id refused, stop())


Prepare = Callable[[], tuple[FrameworkInfo, Credentials | None]]


class NativeDriver:
    """``SchedulerDriver`` over the Mesos v1 HTTP API. Build it with ``create_native_driver``."""

    def __init__(
        self,
        *,
        prepare: Prepare,
        detector: MasterDetector,
        id_store: FrameworkIdStore,
        framework_id: str | None,
        settings: DriverSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.status = ConnectionStatus(framework_id=framework_id)
        self.settings = settings or DriverSettings()
        self._prepare = prepare
        self._detector = detector
        self._id_store = id_store
        self._framework_id = framework_id
        self._id_saved = framework_id is not None
        self._backoff = Backoff(
            self.settings.backoff_initial, self.settings.backoff_max, rng=rng or random.Random()
        )
        self._handler: EventHandler | None = None
        self._framework_info: FrameworkInfo | None = None
        self._credentials: Credentials | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._call_session: aiohttp.ClientSession | None = None
        self._stream_session: aiohttp.ClientSession | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._attempt_task: asyncio.Task[tuple[_Outcome, str]] | None = None
        self._attempt_base: str | None = None
        self._interrupt: tuple[_Outcome, str] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._tearing_down = False
        # The live subscription: calls go to this endpoint with this stream id.
        self._endpoint: str | None = None
        self._stream_id: str | None = None
        self._call_headers: dict[str, str] = {}
        self._last_event = 0.0
        self._watchdog_limit = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._logged: tuple[str, str, str | None] | None = None
        rt = self.settings.request_timeout
        self._call_timeout = aiohttp.ClientTimeout(total=None, sock_connect=rt, sock_read=rt)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=rt, sock_read=None)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        if self._run_task is not None or self._stopping:
            raise RuntimeError("the driver was already started")
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        # User and host name lookups and the secret file are blocking: off the loop.
        try:
            self._framework_info, self._credentials = await asyncio.to_thread(self._prepare)
        except Exception as exc:
            self.status.last_error = str(exc)
            log.error("mesos_driver_not_started", error=str(exc))
            raise
        limit = self.settings.max_call_connections
        self._call_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
        )
        # The event stream holds its connection for hours: keep it out of the call pool.
        self._stream_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True)
        )
        await self._detector.start(self._on_detector_change)
        self._run_task = self._loop.create_task(self._run(), name="mesos-driver")

    async def stop(self) -> None:
        """Close the stream and the sessions. Never sends TEARDOWN."""
        self._stopping = True
        self._wake.set()
        self._interrupt_attempt(_Outcome.FATAL, "driver stopped")
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        await self._detector.stop()
        for session in (self._call_session, self._stream_session):
            if session is not None:
                await session.close()
        self._call_session = self._stream_session = None
        self.status.master_online = False
        self._set_state(ConnectionState.STOPPED)

    # -- calls ----------------------------------------------------------------------------------

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        payload: dict[str, Any] = {
            "offer_ids": [{"value": offer_id} for offer_id in launch.offer_ids],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": list(launch.tasks)}}],
        }
        if refuse_seconds is not None:
            payload["filters"] = {"refuse_seconds": refuse_seconds}
        await self._call("ACCEPT", payload)

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        if not offer_ids:
            return
        payload: dict[str, Any] = {"offer_ids": [{"value": offer_id} for offer_id in offer_ids]}
        if refuse_seconds is not None:
            payload["filters"] = {"refuse_seconds": refuse_seconds}
        await self._call("DECLINE", payload)

    async def suppress(self, roles: Sequence[str]) -> None:
        await self._call("SUPPRESS", {"roles": list(roles)})

    async def revive(self, roles: Sequence[str]) -> None:
        await self._call("REVIVE", {"roles": list(roles)})

    async def kill(self, task_id: str, agent_id: str | None = None) -> None:
        payload: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id is not None:
            payload["agent_id"] = {"value": agent_id}
        await self._call("KILL", payload)

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        await self._call(
            "ACKNOWLEDGE",
            {"agent_id": {"value": agent_id}, "task_id": {"value": task_id}, "uuid": uuid},
        )

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        items: list[dict[str, Any]] = []
        for task_id, agent_id in tasks:
            item: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id is not None:
                item["agent_id"] = {"value": agent_id}
            items.append(item)
        await self._call("RECONCILE", {"tasks": items})

    async def teardown(self) -> None:
        """Remove the framework and kill all its tasks, then stop subscribing."""
        log.warning("mesos_teardown_requested", framework_id=self._framework_id)
        # The master closes the stream on TEARDOWN: do not resubscribe meanwhile.
        self._tearing_down = True
        try:
            await self._call("TEARDOWN", None)
        except BaseException:
            self._tearing_down = False
            self._wake.set()
            raise
        await self.stop()

    async def _call(self, call_type: str, payload: Any) -> None:
        endpoint, stream_id, session = self._endpoint, self._stream_id, self._call_session
        if (
            self.status.state is not ConnectionState.SUBSCRIBED
            or endpoint is None
            or session is None
        ):
            raise NotConnectedError(
                f"{call_type} not sent: no live subscription to a Mesos master "
                f"(state {self.status.state.value})"
            )
        body: dict[str, Any] = {"framework_id": {"value": self._framework_id}, "type": call_type}
        if payload is not None:
            body[call_type.lower()] = payload
        try:
            async with session.post(
                endpoint,
                data=_encoder.encode(body),
                headers=self._call_headers,
                allow_redirects=False,
                timeout=self._call_timeout,
            ) as response:
                if response.status in (200, 202):
                    return
                status = response.status
                try:
                    detail = (await response.text(errors="replace")).strip()[:300]
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    detail = ""  # the status alone decides
        except aiohttp.ConnectionTimeoutError:
            raise DriverError(
                f"{call_type} not sent: connecting to {endpoint} timed out after "
                f"{self.settings.request_timeout}s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            # Refused, unresolvable, TLS handshake failed: no byte of the request went out.
            raise DriverError(f"{call_type} not sent to {endpoint}: {exc!r}") from exc
        except asyncio.TimeoutError:
            raise CallOutcomeUnknownError(
                f"{call_type} to {endpoint} timed out after {self.settings.request_timeout}s "
                "(it may have been applied)"
            ) from None
        except aiohttp.ClientError as exc:
            # The connection failed while (or after) sending: the master may have the call.
            raise CallOutcomeUnknownError(
                f"{call_type} to {endpoint} failed: {exc!r} (it may have been applied)"
            ) from exc
        log.warning(
            "mesos_call_rejected", call=call_type, master=endpoint, status=status, detail=detail
        )
        if (status == 403 or status in _REDIRECTS) and stream_id == self._stream_id:
            self._interrupt_attempt(_Outcome.RETRY, f"{call_type} answered {status}")
        message = f"{call_type} answered HTTP {status} by {endpoint}: {detail}"
        if 300 <= status < 500:
            raise DriverError(message)
        # A 5xx (often from a proxy or load balancer in front of the master) does not say
        # whether the master got the call.
        raise CallOutcomeUnknownError(f"{message} (it may have been applied)")

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
            url = candidates[index % len(candidates)]
            outcome, reason = await self._run_attempt(url)
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

    async def _run_attempt(self, url: str) -> tuple[_Outcome, str]:
        assert self._loop is not None
        self._interrupt = None
        attempt = self._loop.create_task(self._attempt(url), name="mesos-subscription")
        self._attempt_task = attempt
        try:
            await asyncio.wait({attempt})
        finally:
            if not attempt.done():
                attempt.cancel()
                await asyncio.wait({attempt})
            self._attempt_task = None
            self._disarm_watchdog()
        if attempt.cancelled():
            outcome, reason = self._interrupt or (_Outcome.RETRY, "cancelled")
            if reason != "driver stopped":
                log.warning("mesos_stream_interrupted", reason=reason, master=self._attempt_base)
        elif attempt.exception() is not None:
            exc = attempt.exception()
            log.error("mesos_subscription_crashed", master=url, error=repr(exc), exc_info=exc)
            outcome, reason = _Outcome.RETRY, f"internal error: {exc!r}"
            self.status.last_error = reason
        else:
            outcome, reason = attempt.result()
        self._end_subscription(reason)
        return outcome, reason

    def _interrupt_attempt(self, outcome: _Outcome, reason: str) -> None:
        task = self._attempt_task
        if task is None or task.done():
            return
        if self._interrupt is None:
            self._interrupt = (outcome, reason)
        task.cancel()

    def _end_subscription(self, reason: str) -> None:
        was_subscribed = self.status.state is ConnectionState.SUBSCRIBED
        self._endpoint = None
        self._stream_id = None
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
        candidates = self._detector.candidates()
        if self._attempt_task is None or (candidates and candidates[0] == self._attempt_base):
            return
        self._interrupt_attempt(_Outcome.RETRY_NOW, "the leading master changed")

    # -- one subscription -----------------------------------------------------------------------

    async def _attempt(self, base_url: str) -> tuple[_Outcome, str]:
        assert self._stream_session is not None
        endpoint = base_url + SCHEDULER_PATH
        body = self._subscribe_body()
        headers = self._headers({"Accept": "application/json"})
        for _hop in range(MAX_REDIRECTS + 1):
            self._attempt_base = _base_of(endpoint)
            self._set_master(endpoint)
            self._arm_watchdog(self.settings.request_timeout)
            self._set_state(ConnectionState.CONNECTING)
            try:
                response = await self._stream_session.post(
                    endpoint,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=self._stream_timeout,
                )
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                return self._failed(endpoint, f"cannot reach the master: {exc!r}", online=False)
            try:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location", "")
                    if not location:
                        return self._failed(
                            endpoint, f"HTTP {response.status} without Location", online=True
                        )
                    target = urljoin(endpoint, location)
                    log.info("mesos_redirected", master=endpoint, location=target)
                    endpoint = target
                    continue
                if response.status == 200:
                    return await self._consume(endpoint, response)
                return await self._refused(endpoint, response)
            finally:
                response.close()
        return self._failed(endpoint, f"more than {MAX_REDIRECTS} redirects", online=True)

    async def _refused(
        self, endpoint: str, response: aiohttp.ClientResponse
    ) -> tuple[_Outcome, str]:
        status = response.status
        try:
            detail = (await response.text(errors="replace")).strip()[:300]
        except (aiohttp.ClientError, asyncio.TimeoutError):
            detail = ""
        if status == 401:
            message = (
                f"the master at {_base_of(endpoint)} rejected the credentials (HTTP 401): "
                "check mesos.principal and mesos.secret_file"
            )
            log.error(
                "mesos_unauthorized",
                master=endpoint,
                principal=self._credentials.principal if self._credentials else None,
                detail=detail,
            )
            self.status.master_online = True
            self.status.last_error = message
            return _Outcome.RETRY, message
        if status == 503:
            return self._failed(
                endpoint, f"HTTP 503 (no leader yet or recovering) {detail}".strip(), online=False
            )
        return self._failed(endpoint, f"SUBSCRIBE answered HTTP {status}: {detail}", online=True)

    def _failed(self, endpoint: str, message: str, *, online: bool) -> tuple[_Outcome, str]:
        log.warning("mesos_subscribe_failed", master=endpoint, error=message)
        self.status.master_online = online
        self.status.last_error = f"{_base_of(endpoint)}: {message}"
        return _Outcome.RETRY, message

    async def _consume(
        self, endpoint: str, response: aiohttp.ClientResponse
    ) -> tuple[_Outcome, str]:
        stream_id = response.headers.get("Mesos-Stream-Id")
        if not stream_id:
            return self._failed(endpoint, "SUBSCRIBE answered without Mesos-Stream-Id", online=True)
        assert self._loop is not None
        loop = self._loop
        reader = RecordReader(response.content, self.settings.max_record_bytes)
        subscribed = False
        while True:
            try:
                record = await reader.read()
            except RecordIOError as exc:
                log.error("mesos_stream_corrupt", master=endpoint, error=str(exc))
                self.status.last_error = f"corrupt event stream: {exc}"
                return _Outcome.RETRY, str(exc)
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("mesos_stream_broken", master=endpoint, error=repr(exc))
                self.status.last_error = f"event stream broken: {exc!r}"
                return _Outcome.RETRY, "event stream broken"
            if record is None:
                log.warning("mesos_stream_ended", master=endpoint, records=reader.records)
                self.status.last_error = "the master closed the event stream"
                return _Outcome.RETRY, "the master closed the event stream"
            self._last_event = loop.time()
            try:
                event = decode_event(record)
            except msgspec.DecodeError as exc:
                log.error(
                    "mesos_event_undecodable",
                    master=endpoint,
                    record=reader.records,
                    error=str(exc),
                    preview=bytes(record[:200]),
                )
                continue
            kind = event.type
            if kind == "SUBSCRIBED":
                if subscribed:
                    log.warning("mesos_event_unexpected", type=kind, master=endpoint)
                    continue
                result = await self._on_subscribed(event, endpoint, stream_id)
                if result is not None:
                    return result
                subscribed = True
            elif kind == "ERROR":
                return self._on_error_event(event, endpoint)
            elif not subscribed and kind != "HEARTBEAT":
                log.warning("mesos_event_before_subscribed", type=kind, master=endpoint)
            else:
                self._dispatch(event, endpoint)
                # Yield after every record: when the stream stays readable (a burst of offers),
                # reading would otherwise starve the offer passes and the API, and offers would
                # pile up unanswered (B1 and B4 in bench/RESULTS.md).
                await asyncio.sleep(0)

    async def _on_subscribed(
        self, event: Event, endpoint: str, stream_id: str
    ) -> tuple[_Outcome, str] | None:
        subscribed = event.subscribed
        if subscribed is None:
            log.error("mesos_event_malformed", type=event.type, master=endpoint)
            return _Outcome.RETRY, "SUBSCRIBED without payload"
        framework_id = subscribed.framework_id.value
        sent_id = self._framework_id
        if sent_id is not None and framework_id != sent_id:
            message = (
                f"the master answered SUBSCRIBE for framework {sent_id} with a different "
                f"framework id {framework_id}; refusing to adopt it"
            )
            log.error("mesos_framework_id_mismatch", sent=sent_id, received=framework_id)
            self.status.last_error = message
            self._notify("on_error", message)
            return _Outcome.FATAL, message
        interval = subscribed.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
        self._arm_watchdog(interval * self.settings.heartbeat_misses)
        self._framework_id = framework_id
        self.status.framework_id = framework_id
        if not self._id_saved:
            try:
                await self._id_store.save_framework_id(framework_id)
            except Exception as exc:
                # Kept in memory: the next SUBSCRIBE reuses it and the save is retried.
                log.error(
                    "mesos_framework_id_save_failed", framework_id=framework_id, error=repr(exc)
                )
                self.status.last_error = f"cannot store the framework id: {exc!r}"
                return _Outcome.RETRY, "cannot store the framework id"
            self._id_saved = True
            log.info("mesos_framework_registered", framework_id=framework_id)
        self._endpoint = endpoint
        self._stream_id = stream_id
        self._call_headers = self._headers(
            {"Accept": "application/json", "Mesos-Stream-Id": stream_id}
        )
        master_info = subscribed.master_info
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
                framework_id=framework_id,
                heartbeat_interval_seconds=interval,
                master_info=master_info,
                resubscribed=sent_id is not None,
            ),
        )
        return None

    def _on_error_event(self, event: Event, endpoint: str) -> tuple[_Outcome, str]:
        message = event.error.message if event.error is not None else ""
        message = message or "(no message)"
        log.error(
            "mesos_error_event", message=message, master=endpoint, framework_id=self._framework_id
        )
        self.status.last_error = f"the master sent ERROR: {message}"
        self._notify("on_error", message)
        return _Outcome.FATAL, message

    def _dispatch(self, event: Event, endpoint: str) -> None:
        handler = self._handler
        assert handler is not None
        kind = event.type
        try:
            if kind == "HEARTBEAT":
                return
            if kind == "UPDATE" and event.update is not None:
                handler.on_update(event.update.status)
            elif kind == "OFFERS" and event.offers is not None:
                handler.on_offers(event.offers.offers)
            elif kind == "RESCIND" and event.rescind is not None:
                handler.on_rescind(event.rescind.offer_id.value)
            elif kind == "FAILURE" and event.failure is not None:
                failure = event.failure
                handler.on_failure(
                    failure.agent_id.value if failure.agent_id is not None else None,
                    failure.executor_id.value if failure.executor_id is not None else None,
                )
            elif kind in ("INVERSE_OFFERS", "RESCIND_INVERSE_OFFER", "MESSAGE"):
                log.debug("mesos_event_ignored", type=kind)
            elif kind in ("UPDATE", "OFFERS", "RESCIND", "FAILURE"):
                log.error("mesos_event_malformed", type=kind, master=endpoint)
            else:
                log.warning("mesos_event_unknown", type=kind, master=endpoint)
        except Exception:
            log.exception("mesos_handler_failed", type=kind)

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
        """Interrupt the attempt when no record arrives for ``limit`` seconds."""
        assert self._loop is not None
        self._watchdog_limit = limit
        self._last_event = self._loop.time()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._loop.call_at(self._last_event + limit, self._check_watchdog)

    def _check_watchdog(self) -> None:
        assert self._loop is not None
        due = self._last_event + self._watchdog_limit
        if self._loop.time() < due:
            self._watchdog = self._loop.call_at(due, self._check_watchdog)
            return
        self._watchdog = None
        reason = f"no event from the master for {self._watchdog_limit:g}s"
        self.status.last_error = reason
        self._interrupt_attempt(_Outcome.RETRY, reason)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # -- helpers --------------------------------------------------------------------------------

    def _subscribe_body(self) -> bytes:
        assert self._framework_info is not None
        info = self._framework_info.with_id(self._framework_id)
        body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if self._framework_id is not None:
            body["framework_id"] = {"value": self._framework_id}
        return _encoder.encode(body)

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **extra}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.authorization()
        return headers

    def _set_master(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self.status.master_hostname = parts.hostname or ""
        self.status.master_port = parts.port or 5050

    def _set_state(self, state: ConnectionState) -> None:
        self.status.state = state
        master = f"{self.status.master_hostname}:{self.status.master_port}"
        key = (state.value, master, self.status.framework_id)
        if key == self._logged:
            return
        self._logged = key
        log.info(
            "mesos_connection_changed",
            state=state.value,
            master=master,
            framework_id=self.status.framework_id,
        )


def _base_of(endpoint: str) -> str:
    """``scheme://host:port`` of an endpoint, as the detectors spell candidates."""
    try:
        return normalize_master_url(endpoint)
    except ValueError:
        return endpoint


def create_native_driver(
    config: Config,
    framework_id: str | None,
    id_store: FrameworkIdStore,
    *,
    api_url: str,
    detector: MasterDetector | None = None,
    settings: DriverSettings | None = None,
    rng: random.Random | None = None,
) -> NativeDriver:
    """The daemon's driver for ``config``; ``framework_id`` is the stored id, if any.

    ``api_url`` is where the daemon's API listens (FrameworkInfo's ``webui_url`` unless
    ``mesos.webui_url`` is set); an empty string derives it from ``api.host`` and ``api.port``.
    User and host name lookups and the secret file are read in ``start()``, off the loop.
    """
    mesos = config.mesos

    def prepare() -> tuple[FrameworkInfo, Credentials | None]:
        hostname = config.effective_hostname()
        info = build_framework_info(
            config,
            user=config.effective_user(),
            hostname=hostname,
            api_url=api_url or api_url_from_config(config, hostname),
        )
        return info, read_credentials(mesos)

    return NativeDriver(
        prepare=prepare,
        detector=detector or detector_from_config(mesos.master, retry_max_delay=mesos.backoff_max),
        id_store=id_store,
        framework_id=framework_id,
        settings=settings or DriverSettings.from_config(mesos),
        rng=rng,
    )
