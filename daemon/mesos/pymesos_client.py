"""pymesos's side of the pymesos adapter: the code that runs on pymesos's own threads.

``PymesosClient`` is pymesos's ``MesosSchedulerDriver`` (0.3.15) with its defaults made safe for
a long-running service:

- it never sends TEARDOWN: ``_shutdown`` (where pymesos tears down unless the last ``stop()``
  said ``failover=True``) does nothing but report that the I/O thread ended, and ``stop()``
  defaults to ``failover=True``;
- it subscribes with exactly the FrameworkInfo it is given (pymesos would ask the master's
  ``/version`` and add or strip GPU_RESOURCES);
- ``implicit_acknowledgements=False``: the daemon acknowledges after it has stored an update;
- one client is one subscription attempt: when its connection closes (refused, 503, stream
  ended) it halts instead of reconnecting at once, so the adapter chooses the back-off and the
  next master. A 307 redirect is still followed by pymesos within the same client.

pymesos calls back on its I/O thread. Each callback converts pymesos's dicts into
``mesos_types`` structs there and hands them to ``post(kind, payload)``, which the adapter
(``pymesos_driver``) makes thread-safe with ``call_soon_threadsafe``. ``call()`` runs one
blocking Mesos call on the caller's thread (the adapter's call executor).

``undo_import_effects()`` reverts what importing pymesos does to the whole process: its SIGINT
handler, the ``interrupt_main()`` its I/O thread fires when it dies, and its own stderr log
handler. Importing this module raises ``ImportError`` when pymesos is not installed.

This module does not touch the event loop, the handler, the store or the daemon's status.
"""

from __future__ import annotations

import http.client
import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pymesos
import pymesos.process
import structlog
from pymesos import MesosSchedulerDriver, Scheduler

from scale_scheduler.daemon.mesos.driver import DriverError, NotConnectedError
from scale_scheduler.daemon.mesos.framework_info import Credentials
from scale_scheduler.daemon.mesos.mesos_types import Offer, Subscribed, TaskStatus

log = structlog.get_logger(__name__)

Post = Callable[[str, Any], None]
"""``post(kind, payload)`` from pymesos's thread; kinds are the constants below."""

CONNECTING = "connecting"  # payload: "host:port" a SUBSCRIBE is about to go to
SUBSCRIBED = "subscribed"  # (Subscribed, "host:port")
OFFERS = "offers"  # list[Offer]
RESCIND = "rescind"  # offer id
UPDATE = "update"  # TaskStatus
FAILURE = "failure"  # (agent id or None, executor id or None)
ERROR = "error"  # the master's message; the client has halted
MISMATCH = "mismatch"  # (sent framework id, received framework id); the client has halted
CLOSED = "closed"  # why the connection closed; the client has halted
ENDED = "ended"  # pymesos's error if its I/O thread died of one, else None; always last

# A kept-alive connection the other side had closed fails in one of these ways.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
# Calls a master may receive twice without harm.
_SAFE_TO_RESEND = frozenset({"DECLINE", "ACKNOWLEDGE", "RECONCILE", "REVIVE", "SUPPRESS", "KILL"})
_SEND_ERROR = re.compile(r"Failed to send request (?P<status>\d+): (?P<detail>[^\n]*)")
_HTTP_ERROR = re.compile(r"Failed with HTTP (?P<status>\d+)")


class CallRejected(DriverError):
    """The master answered a call with an HTTP error status."""

    def __init__(self, call_type: str, status: int, detail: str) -> None:
        super().__init__(f"{call_type} answered HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class _NoInterruptMain:
    """Stands in for ``_thread`` inside ``pymesos.process``.

    pymesos's I/O thread calls ``interrupt_main()`` when it dies of an exception: that raises
    KeyboardInterrupt in the main thread, or, with asyncio's signal handling, looks exactly like
    Ctrl-C and stops the daemon with exit status 0. The adapter learns of the death through
    ``PymesosClient._shutdown`` instead, and subscribes again.
    """

    @staticmethod
    def interrupt_main(*_args: object) -> None:
        return None


def undo_import_effects() -> None:
    """Revert pymesos's import-time changes to the process (idempotent).

    Restores the SIGINT handler pymesos replaced (only from the main thread, and only while
    pymesos's is still installed), neutralises its ``interrupt_main()``, and removes the stderr
    handler it attached to the ``pymesos`` logger so its records reach the daemon's logging.
    """
    process = pymesos.process
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is process._handle_sigint:
            previous = process._prev_handler
            signal.signal(
                signal.SIGINT, previous if previous is not None else signal.default_int_handler
            )
    else:
        log.warning("pymesos_sigint_handler_kept", reason="not on the main thread")
    if not isinstance(process.thread, _NoInterruptMain):
        process.thread = _NoInterruptMain()
    logger = logging.getLogger("pymesos")
    own = getattr(pymesos, "handler", None)
    if isinstance(own, logging.Handler) and own in logger.handlers:
        logger.removeHandler(own)
        logger.setLevel(logging.NOTSET)


def _take_thread_error() -> str | None:
    """The exception pymesos's dying I/O thread left in ``pymesos.process`` (then cleared)."""
    process = pymesos.process
    exc_info = process._exc_info
    process._exc_info = None
    if not exc_info:
        return None
    exc = exc_info[1]
    return f"{type(exc).__name__}: {exc}"


def http_status_of(error: str) -> int | None:
    """The HTTP status in pymesos's 'Failed with HTTP <status>' subscription error, if any."""
    match = _HTTP_ERROR.search(error)
    return int(match.group("status")) if match else None


_offers_decoder = msgspec.json.Decoder(list[Offer])


class _Callbacks(Scheduler):
    """pymesos's ``Scheduler`` interface: converts and posts, never raises into pymesos."""

    def __init__(self, post: Post) -> None:
        self._post = post

    def resourceOffers(self, driver: PymesosClient, offers: list[dict[str, Any]]) -> None:
        try:
            # Through JSON, as the native driver reads them: Offer keeps resources as raw JSON.
            converted = _offers_decoder.decode(msgspec.json.encode(offers))
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
            log.error("mesos_event_undecodable", type="OFFERS", error=str(exc))
            return
        self._post(OFFERS, converted)

    def offerRescinded(self, driver: PymesosClient, offer_id: dict[str, Any]) -> None:
        value = offer_id.get("value") if isinstance(offer_id, dict) else None
        if isinstance(value, str):
            self._post(RESCIND, value)
        else:
            log.error("mesos_event_malformed", type="RESCIND")

    def statusUpdate(self, driver: PymesosClient, status: dict[str, Any]) -> None:
        try:
            converted = msgspec.convert(status, TaskStatus)
        except msgspec.ValidationError as exc:
            log.error("mesos_event_undecodable", type="UPDATE", error=str(exc))
            return
        self._post(UPDATE, converted)

    def error(self, driver: PymesosClient, message: str) -> None:
        # Halt before pymesos reads on: it would resubscribe and get ERROR again.
        driver.halt()
        self._post(ERROR, str(message or "") or "(no message)")

    def inverseOffers(self, driver: PymesosClient, offers: list[Any]) -> None:
        log.debug("mesos_event_ignored", type="INVERSE_OFFERS")

    def inverseOfferRescinded(self, driver: PymesosClient, offer_id: Any) -> None:
        log.debug("mesos_event_ignored", type="RESCIND_INVERSE_OFFER")

    def frameworkMessage(
        self, driver: PymesosClient, executor_id: Any, agent_id: Any, data: Any
    ) -> None:
        log.debug("mesos_event_ignored", type="MESSAGE")


class PymesosClient(MesosSchedulerDriver):
    """One subscription attempt through pymesos; build a new one for every attempt."""

    framework_id: str | None  # pymesos's property (its package ships no types)

    def __init__(
        self,
        framework: dict[str, Any],
        master: str,
        post: Post,
        *,
        credentials: Credentials | None,
        timeout: float,
        idle_close: float = 10.0,
    ) -> None:
        super().__init__(
            _Callbacks(post),
            dict(framework),
            master,
            implicit_acknowledgements=False,
            principal=credentials.principal if credentials else None,
            secret=credentials.secret if credentials else None,
            failover=True,
            # pymesos uses this for its call timeout and its connect deadline alike.
            timeout=timeout,
        )
        self._post = post
        self._halted = False
        self._attempt_master: str | None = None
        self._attempt_subscribed = False
        self._idle_close = idle_close
        self._last_call = 0.0
        self.last_event = 0.0
        """``time.monotonic()`` of the last event read (any type), written by the I/O thread."""

    # -- pymesos overrides ----------------------------------------------------------------------

    @property
    def framework(self) -> dict[str, Any]:
        return dict(self._framework)

    def _get_version(self, master: Any) -> None:
        # pymesos asks for the version only to rewrite GPU_RESOURCES, which ``framework`` undoes.
        return None

    def stop(self, failover: bool = True) -> None:
        super().stop(failover=True)

    def _backoff(self, num_conn_retry: int) -> float:
        # pymesos sleeps this long on its I/O thread before retrying a failed connect; this
        # client halts instead, and the adapter backs off.
        return 0.0

    def _shutdown(self) -> None:
        # Runs as the I/O thread ends. pymesos sends TEARDOWN here: never do.
        self._halted = True
        self._post(ENDED, _take_thread_error())

    def gen_request(self) -> bytes:
        if self._halted or self._new_master != self._master:
            # pymesos opens a connection here after a halt, and to the old master while it is
            # about to follow a redirect: it closes both unused, so they carry no SUBSCRIBE.
            return b""
        master = self.master
        self._attempt_master = master
        self._attempt_subscribed = False
        self._post(CONNECTING, master)
        request: bytes = super().gen_request()
        return request

    def on_event(self, event: dict[str, Any]) -> None:
        self.last_event = time.monotonic()
        super().on_event(event)

    def on_subscribed(self, info: dict[str, Any]) -> None:
        try:
            subscribed = msgspec.convert(info, Subscribed)
        except msgspec.ValidationError as exc:
            log.error("mesos_event_undecodable", type="SUBSCRIBED", error=str(exc))
            self.halt()
            self._post(CLOSED, "SUBSCRIBED without a valid payload")
            return
        received = subscribed.framework_id.value
        sent = self.framework_id
        if sent and received != sent:
            self.halt()
            self._post(MISMATCH, (sent, received))
            return
        self.framework_id = received
        self._attempt_subscribed = True
        self._post(SUBSCRIBED, (subscribed, self.master))

    def on_failure(self, failure: dict[str, Any]) -> None:
        # pymesos indexes agent_id unconditionally: a FAILURE without one would kill its thread.
        agent = (failure.get("agent_id") or {}).get("value")
        executor = (failure.get("executor_id") or {}).get("value")
        self._post(FAILURE, (agent, executor))

    def on_close(self) -> None:
        self._close()
        if self._halted:
            return
        # pymesos closes the old connection when it follows a redirect: let it.
        if self._new_master != self._attempt_master:
            return
        reason = (
            "the master closed the event stream"
            if self._attempt_subscribed
            else f"no SUBSCRIBED from {self._attempt_master} (refused, unavailable or unreachable)"
        )
        self.halt()
        self._post(CLOSED, reason)

    # -- used by the adapter --------------------------------------------------------------------

    def halt(self) -> None:
        """Stop the I/O thread for good: no TEARDOWN, no reconnect. Any thread; may block on
        the call lock for up to one call's timeout."""
        self._halted = True
        self.stop(failover=True)

    def call(self, call_type: str, action: Callable[[PymesosClient], None]) -> None:
        """Run ``action(self)`` (one pymesos call) if the subscription is live. Blocking.

        pymesos silently drops calls made while it is not connected; holding its lock across
        the check and the call makes a dropped call a ``NotConnectedError`` instead.
        """
        with self._lock:
            if self._halted or not self.connected or not self.framework_id:
                raise NotConnectedError(f"{call_type} not sent: pymesos is not subscribed")
            # pymesos keeps one call connection forever; the master (or anything between)
            # drops idle ones. Start afresh after a pause, as aiohttp's pool does.
            if self._conn is not None and time.monotonic() - self._last_call > self._idle_close:
                self._close()
            try:
                try:
                    action(self)
                except _STALE_CONNECTION:
                    if call_type not in _SAFE_TO_RESEND:
                        raise
                    # pymesos has closed the dead connection: the call goes again on a new one.
                    log.info("pymesos_call_resent", call=call_type)
                    action(self)
            except RuntimeError as exc:
                match = _SEND_ERROR.search(str(exc))
                if match is None:
                    raise DriverError(f"{call_type} failed: {exc}") from None
                detail = match.group("detail").strip()[:300]
                raise CallRejected(call_type, int(match.group("status")), detail) from None
            finally:
                self._last_call = time.monotonic()

    def send_call(self, call_type: str, payload: dict[str, Any] | None) -> None:
        """A call pymesos has no faithful method for (KILL and RECONCILE with agent ids,
        TEARDOWN), through its own transport. Use inside ``call``."""
        body: dict[str, Any] = {"type": call_type, "framework_id": {"value": self.framework_id}}
        if payload is not None:
            body[call_type.lower()] = payload
        self._send(body)
