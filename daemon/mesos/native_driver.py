"""The native asyncio Mesos driver: a v1 HTTP scheduler API client (aiohttp for the stream).

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

Calls (ACCEPT, DECLINE, ACKNOWLEDGE, ...) go through a lean pooled HTTP client
(``http_calls.HttpCallClient``, one per subscription) to the master holding the subscription,
with its ``Mesos-Stream-Id``; they raise ``NotConnectedError`` while no subscription is live,
``DriverError`` when the call surely took no effect (the connection could not be made, or the
master answered 3xx/4xx), and ``CallOutcomeUnknownError`` when it may have (timed out once sent,
connection lost before the answer, answered 5xx). When a subscription ends, calls already under
way finish on its client, which then closes.

This module is the only one that knows wire JSON, ``Mesos-Stream-Id`` and the call shapes; the
scheduling decisions belong to the handler.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

import aiohttp
import msgspec
import structlog

from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    ConnectionState,
    DriverError,
    EventHandler,
    FrameworkIdStore,
    Launch,
)
from scale_scheduler.daemon.mesos.http_calls import (
    CallNotSentError,
    CallResponse,
    CallUnansweredError,
    HttpCallClient,
)
from scale_scheduler.daemon.mesos.loop_share import LoopShare
from scale_scheduler.daemon.mesos.master_detector import (
    MasterDetector,
    detector_from_config,
    normalize_master_url,
)
from scale_scheduler.daemon.mesos.mesos_types import Event, Value, decode_event
from scale_scheduler.daemon.mesos.recordio import RecordIOError, RecordReader
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
    reconcile_payload,
    rejected_call_error,
)
from scale_scheduler.daemon.mesos.timer_clock import TimerClock
from scale_scheduler.daemon.service.config import Config, MesosConfig

log = structlog.get_logger(__name__)

SCHEDULER_PATH = "/api/v1/scheduler"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_encoder = msgspec.json.Encoder()

STREAM_READ_BUFFER = 1024 * 1024
"""Bytes of the event stream buffered before reading from the socket pauses (aiohttp pauses at
twice this). aiohttp's default of 64 KiB paused and resumed the socket every one or two OFFERS
events of 100 offers (85 KB each): a selector unregister and register, and an extra loop turn,
for every few events of a burst (B1 in ``bench/RESULTS.md``)."""


@dataclass(frozen=True)
class DriverSettings(SubscriptionSettings):
    """Timing and size limits of the driver (from ``MesosConfig``; tests shorten them)."""

    max_record_bytes: int = 64 * 1024 * 1024
    max_call_connections: int = 16

    @classmethod
    def from_config(cls, mesos: MesosConfig) -> DriverSettings:
        return replace(
            super().from_config(mesos),
            max_record_bytes=mesos.max_record_bytes,
            max_call_connections=mesos.max_call_connections,
        )


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
        loop_share: LoopShare | None = None,
        clock: TimerClock | None = None,
        may_subscribe: Callable[[], bool] | None = None,
    ) -> None:
        """``clock`` times the liveness watchdog and the calls' answers (default: the loop's);
        ``may_subscribe``: see ``SubscriptionCore``."""
        self.settings = settings or DriverSettings()
        self._loop_share = loop_share or LoopShare()
        self._core = SubscriptionCore(
            detector=detector,
            id_store=id_store,
            framework_id=framework_id,
            settings=self.settings,
            rng=rng,
            may_subscribe=may_subscribe,
        )
        self.status = self._core.status
        self._prepare = prepare
        self._detector = detector
        self._loop: asyncio.AbstractEventLoop | None = None
        # Calls of the live subscription; those of ended ones, until their calls are over.
        self._calls: HttpCallClient | None = None
        self._retired_calls: list[HttpCallClient] = []
        self._stream_session: aiohttp.ClientSession | None = None
        self._attempt_task: asyncio.Task[Result] | None = None
        self._attempt_base: str | None = None
        self._interrupt: Result | None = None
        # The live subscription: calls go to this endpoint with this stream id.
        self._endpoint: str | None = None
        self._stream_id: str | None = None
        self._last_event = 0.0
        self._timer_clock = clock
        self._holding = False
        """True while the reader holds the stream for the handler (back-pressure)."""
        self._watchdog = Watchdog(clock, self._last_activity, self._watchdog_expired)
        rt = self.settings.request_timeout
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=rt, sock_read=None)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        await self._core.begin(handler, self._prepare)
        self._loop = asyncio.get_running_loop()
        self._stream_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            read_bufsize=STREAM_READ_BUFFER,
        )
        await self._core.launch(self._on_detector_change, self._run_attempt, "mesos-driver")

    async def stop(self) -> None:
        """Close the stream and every call connection. Never sends TEARDOWN."""
        await self._core.halt(lambda: self._interrupt_attempt(Outcome.FATAL, STOPPED_REASON))
        if self._stream_session is not None:
            await self._stream_session.close()
        self._stream_session = None
        self._retire_calls()
        for calls in self._retired_calls:
            calls.close()
        self._retired_calls = []
        self._core.stopped()

    # -- calls ----------------------------------------------------------------------------------

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        payload: dict[str, Any] = {
            "offer_ids": _offer_id_values(launch.offer_ids),
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": list(launch.tasks)}}],
        }
        if refuse_seconds is not None:
            payload["filters"] = {"refuse_seconds": refuse_seconds}
        await self._call("ACCEPT", payload)

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        if not offer_ids:
            return
        payload: dict[str, Any] = {"offer_ids": _offer_id_values(offer_ids)}
        if refuse_seconds is not None:
            payload["filters"] = {"refuse_seconds": refuse_seconds}
        await self._call("DECLINE", payload)

    async def suppress(self, roles: Sequence[str]) -> None:
        await self._call("SUPPRESS", {"roles": list(roles)})

    async def revive(self, roles: Sequence[str]) -> None:
        await self._call("REVIVE", {"roles": list(roles)})

    async def kill(
        self, task_id: str, agent_id: str | None = None, grace_period: float | None = None
    ) -> None:
        await self._call("KILL", kill_payload(task_id, agent_id, grace_period))

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        await self._call("ACKNOWLEDGE", acknowledge_payload(agent_id, task_id, uuid))

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[DriverError | None]:
        """One ACKNOWLEDGE call per ``(agent_id, task_id, uuid)``, pipelined on one connection
        (Mesos takes one acknowledgement per call); each one's error, or None."""
        endpoint, stream_id, calls = self._endpoint, self._stream_id, self._calls
        if self.status.state is not ConnectionState.SUBSCRIBED or endpoint is None or calls is None:
            error = self._core.not_connected("ACKNOWLEDGE")
            return [error] * len(acks)
        prefix = _ack_prefix(self._core.framework_id)
        encode = _encoder.encode
        bodies = [
            b'%s%s},"task_id":{"value":%s},"uuid":%s}}'
            % (prefix, encode(agent_id), encode(task_id), encode(uuid))
            for agent_id, task_id, uuid in acks
        ]
        answers = await calls.post_many(bodies)
        return [self._outcome("ACKNOWLEDGE", endpoint, stream_id, answer) for answer in answers]

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        await self._call("RECONCILE", reconcile_payload(tasks))

    async def teardown(self) -> None:
        """Remove the framework and kill all its tasks, then stop subscribing."""
        await self._core.teardown(lambda: self._call("TEARDOWN", None), self.stop)

    async def _call(self, call_type: str, payload: Any) -> None:
        endpoint, stream_id, calls = self._endpoint, self._stream_id, self._calls
        if self.status.state is not ConnectionState.SUBSCRIBED or endpoint is None or calls is None:
            raise self._core.not_connected(call_type)
        body: dict[str, Any] = {
            "framework_id": {"value": self._core.framework_id},
            "type": call_type,
        }
        if payload is not None:
            body[call_type.lower()] = payload
        response: CallResponse | Exception
        try:
            response = await calls.post(_encoder.encode(body))
        except (CallNotSentError, CallUnansweredError) as exc:
            response = exc
        error = self._outcome(call_type, endpoint, stream_id, response)
        if error is not None:
            raise error

    def _outcome(
        self, call_type: str, endpoint: str, stream_id: str | None, answer: CallResponse | Exception
    ) -> DriverError | None:
        """What a call's answer (or its client's error) means: None when it took effect."""
        if isinstance(answer, CallNotSentError):
            if answer.timed_out:
                return DriverError(
                    f"{call_type} not sent: connecting to {endpoint} timed out after "
                    f"{self.settings.request_timeout}s"
                )
            return DriverError(f"{call_type} not sent to {endpoint}: {answer}")
        if isinstance(answer, CallUnansweredError):
            if answer.timed_out:
                return CallOutcomeUnknownError(
                    f"{call_type} to {endpoint} timed out after {self.settings.request_timeout}s "
                    "(it may have been applied)"
                )
            return CallOutcomeUnknownError(
                f"{call_type} to {endpoint} failed: {answer} (it may have been applied)"
            )
        if not isinstance(answer, CallResponse):
            raise answer
        status = answer.status
        if status in (200, 202):
            return None
        detail = answer.body.decode(errors="replace").strip()[:300]
        error = rejected_call_error(call_type, endpoint, status, detail)
        if status in RESUBSCRIBE_STATUSES and stream_id == self._stream_id:
            self._interrupt_attempt(Outcome.RETRY, f"{call_type} answered {status}")
        return error

    # -- the subscription loop ------------------------------------------------------------------

    async def _run_attempt(self, url: str) -> Result:
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
            self._watchdog.disarm()
        if attempt.cancelled():
            outcome, reason = self._interrupt or (Outcome.RETRY, "cancelled")
            if reason != STOPPED_REASON:
                log.warning("mesos_stream_interrupted", reason=reason, master=self._attempt_base)
        elif attempt.exception() is not None:
            exc = attempt.exception()
            log.error("mesos_subscription_crashed", master=url, error=repr(exc), exc_info=exc)
            outcome, reason = Outcome.RETRY, f"internal error: {exc!r}"
            self.status.last_error = reason
        else:
            outcome, reason = attempt.result()
        self._end_subscription(reason)
        return outcome, reason

    def _interrupt_attempt(self, outcome: Outcome, reason: str) -> None:
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
        self._retire_calls()
        self._core.ended(reason, was_subscribed=was_subscribed)

    def _on_detector_change(self) -> None:
        self._core.wake.set()
        candidates = self._detector.candidates()
        if self._attempt_task is None or (candidates and candidates[0] == self._attempt_base):
            return
        self._interrupt_attempt(Outcome.RETRY_NOW, "the leading master changed")

    # -- one subscription -----------------------------------------------------------------------

    async def _attempt(self, base_url: str) -> Result:
        assert self._stream_session is not None
        endpoint = base_url + SCHEDULER_PATH
        body = self._subscribe_body()
        headers = self._headers({"Accept": "application/json"})
        for _hop in range(MAX_REDIRECTS + 1):
            self._attempt_base = _base_of(endpoint)
            self._core.set_master(endpoint)
            self._watchdog.arm(self.settings.request_timeout)
            self._core.set_state(ConnectionState.CONNECTING)
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

    async def _refused(self, endpoint: str, response: aiohttp.ClientResponse) -> Result:
        status = response.status
        try:
            detail = (await response.text(errors="replace")).strip()[:300]
        except (aiohttp.ClientError, asyncio.TimeoutError):
            detail = ""
        if status == 401:
            where = _base_of(endpoint)
            return self._core.unauthorized(where, master=endpoint, detail=detail)
        if status == 503:
            return self._failed(
                endpoint, f"HTTP 503 (no leader yet or recovering) {detail}".strip(), online=False
            )
        return self._failed(endpoint, f"SUBSCRIBE answered HTTP {status}: {detail}", online=True)

    def _failed(self, endpoint: str, message: str, *, online: bool) -> Result:
        return self._core.failed(message, master=endpoint, where=_base_of(endpoint), online=online)

    async def _consume(self, endpoint: str, response: aiohttp.ClientResponse) -> Result:
        stream_id = response.headers.get("Mesos-Stream-Id")
        if not stream_id:
            return self._failed(endpoint, "SUBSCRIBE answered without Mesos-Stream-Id", online=True)
        assert self._loop is not None
        reader = RecordReader(response.content, self.settings.max_record_bytes)
        subscribed = False
        while True:
            try:
                record = await reader.read()
            except RecordIOError as exc:
                log.error("mesos_stream_corrupt", master=endpoint, error=str(exc))
                self.status.last_error = f"corrupt event stream: {exc}"
                return Outcome.RETRY, str(exc)
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("mesos_stream_broken", master=endpoint, error=repr(exc))
                self.status.last_error = f"event stream broken: {exc!r}"
                return Outcome.RETRY, "event stream broken"
            if record is None:
                log.warning("mesos_stream_ended", master=endpoint, records=reader.records)
                self.status.last_error = "the master closed the event stream"
                return Outcome.RETRY, "the master closed the event stream"
            self._last_event = self._clock()
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
                # Yield after every record (more while the API is busy): when the stream stays
                # readable (a burst of offers), reading would otherwise starve the offer passes
                # and the API, and offers would pile up unanswered (B1 and B4 in
                # bench/RESULTS.md).
                await self._loop_share.after_record()
                handler = self._core.handler
                room = handler.backlog_room() if handler is not None else None
                if room is not None:
                    # Status updates wait unacknowledged: read nothing until they are handled
                    # (TCP holds the rest at the master; the watchdog is fed meanwhile).
                    await self._wait_for_room(room)

    async def _on_subscribed(self, event: Event, endpoint: str, stream_id: str) -> Result | None:
        subscribed = event.subscribed
        if subscribed is None:
            log.error("mesos_event_malformed", type=event.type, master=endpoint)
            return Outcome.RETRY, "SUBSCRIBED without payload"
        framework_id = subscribed.framework_id.value
        sent_id = self._core.framework_id
        if sent_id is not None and framework_id != sent_id:
            return self._core.mismatch(sent_id, framework_id)
        interval = self._core.adopt(subscribed)
        self._watchdog.arm(interval * self.settings.heartbeat_misses)
        failure = await self._core.save_framework_id()
        if failure is not None:
            return failure
        self._retire_calls()
        self._calls = HttpCallClient(
            endpoint,
            self._headers({"Accept": "application/json", "Mesos-Stream-Id": stream_id}),
            timeout=self.settings.request_timeout,
            max_connections=self.settings.max_call_connections,
            clock=self._timer_clock,
        )
        self._endpoint = endpoint
        self._stream_id = stream_id
        self._core.subscribed(subscribed, interval, resubscribed=sent_id is not None)
        return None

    def _on_error_event(self, event: Event, endpoint: str) -> Result:
        message = event.error.message if event.error is not None else ""
        return self._core.error_event(message or "(no message)", endpoint)

    async def _wait_for_room(self, room: Awaitable[None]) -> None:
        assert self._loop is not None
        loop = self._loop
        log.info("mesos_stream_paused", reason="status update backlog")
        started = loop.time()
        self._holding = True
        try:
            await room
        finally:
            self._holding = False
            self._last_event = loop.time()
        log.info("mesos_stream_resumed", paused_s=round(loop.time() - started, 3))

    def _last_activity(self) -> float:
        # While the stream is held, the silence is ours, not the master's.
        return self._clock() if self._holding else self._last_event

    def _dispatch(self, event: Event, endpoint: str) -> None:
        handler = self._core.handler
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

    # -- watchdog -------------------------------------------------------------------------------

    def _clock(self) -> float:
        if self._timer_clock is not None:
            return self._timer_clock.time()
        assert self._loop is not None
        return self._loop.time()

    def _watchdog_expired(self, reason: str) -> None:
        """Interrupt the attempt: no record arrived within the limit."""
        self.status.last_error = reason
        self._interrupt_attempt(Outcome.RETRY, reason)

    # -- helpers --------------------------------------------------------------------------------

    def _retire_calls(self) -> None:
        """The subscription's calls client takes no more calls; those under way finish."""
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.retire()
            self._retired_calls.append(calls)
        self._retired_calls = [c for c in self._retired_calls if c.active]

    def _subscribe_body(self) -> bytes:
        assert self._core.framework_info is not None
        info = self._core.framework_info.with_id(self._core.framework_id)
        body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if self._core.framework_id is not None:
            body["framework_id"] = {"value": self._core.framework_id}
        return _encoder.encode(body)

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **extra}
        if self._core.credentials is not None:
            headers["Authorization"] = self._core.credentials.authorization()
        return headers


def _offer_id_values(offer_ids: Sequence[str]) -> list[Value]:
    """``OfferID`` messages of a call: structs built in C, encoded faster than dicts (a DECLINE
    carries every offer of a pass)."""
    return list(map(Value, offer_ids))


def _ack_prefix(framework_id: str | None) -> bytes:
    """An ACKNOWLEDGE call's JSON up to its agent id's value (the rest is appended per call)."""
    return (
        b'{"framework_id":{"value":%s},"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":'
        % (_encoder.encode(framework_id))
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
    loop_share: LoopShare | None = None,
    clock: TimerClock | None = None,
    may_subscribe: Callable[[], bool] | None = None,
) -> NativeDriver:
    """The daemon's driver for ``config``; ``framework_id`` is the stored id, if any.

    ``api_url`` is where the daemon's API listens (FrameworkInfo's ``webui_url`` unless
    ``mesos.webui_url`` is set); an empty string derives it from ``api.host`` and ``api.port``.
    User and host name lookups and the secret file are read in ``start()``, off the loop.
    """
    mesos = config.mesos
    return NativeDriver(
        prepare=framework_preparer(config, api_url),
        detector=detector or detector_from_config(mesos.master, retry_max_delay=mesos.backoff_max),
        id_store=id_store,
        framework_id=framework_id,
        settings=settings or DriverSettings.from_config(mesos),
        rng=rng,
        loop_share=loop_share,
        clock=clock,
        may_subscribe=may_subscribe,
    )
