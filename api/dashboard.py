"""The live web dashboard: the page at ``/``, its assets, and its data as Server-Sent Events.

The page (``dashboard.html``, ``.css``, ``.js`` beside this module, shipped as package data) is
read once at start-up, off the loop, and served from memory. Its live data comes from
``GET /dashboard/events/``: an event stream whose every ``snapshot`` event is the whole picture
(master and scheduler, queue, resources, task counts, nodes, the head of the queue, recent
tasks). One ``DashboardHub`` builds a snapshot once per ``interval`` while anyone watches and
hands the same bytes to every subscriber, so N open pages cost one build; a slow page only ever
gets the latest snapshot, never a backlog. Each stream holds a connection for as long as the
page is open, so at most ``api.max_event_streams`` are open at once (503 beyond): streams are
reads, open to anyone unless ``api.read_auth``, and must not take every connection.
``GET /dashboard/state/`` answers one snapshot as JSON.

The page changes nothing itself: its buttons and form call the spec's API (``PATCH /scheduler/``,
``PATCH /nodes/{id}/``, ``POST /queue/``), with the bearer token when one is configured.
This module reads state only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import msgspec
import structlog
from aiohttp import web

from scale_scheduler.api.errors import text_error
from scale_scheduler.api.keys import CONFIG, CORE
from scale_scheduler.daemon.scheduling.core_facade import TaskView
from scale_scheduler.daemon.service.burst_log import BurstLog
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.domain import TaskState

log = structlog.get_logger(__name__)

SNAPSHOT_INTERVAL = 1.0
"""Seconds between two snapshots pushed to the pages."""
QUEUE_ROWS = 15
RECENT_ROWS = 20
NODE_ROWS = 500
ASSETS = {
    "dashboard.html": "text/html",
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
}
_AUTH_MARK = "{{AUTH_MODE}}"
_encoder = msgspec.json.Encoder()


def auth_mode(config: Config) -> str:
    """What the page must send a token for: ``none``, ``write`` (changes) or ``all``."""
    if not config.api.token_file:
        return "none"
    return "all" if config.api.read_auth else "write"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _read_assets(mode: str) -> dict[str, Asset]:
    folder = resources.files("scale_scheduler.api")
    assets: dict[str, Asset] = {}
    for name, content_type in ASSETS.items():
        body = (folder / name).read_bytes()
        if name.endswith(".html"):
            body = body.replace(_AUTH_MARK.encode(), mode.encode())
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        assets[name] = Asset(body, content_type, etag)
    return assets


# --- snapshots ---------------------------------------------------------------------------------


async def build_snapshot(app: web.Application) -> dict[str, Any]:
    """Everything the page shows: the core's status snapshot (``/status/``'s very body) and
    counters, the nodes and the head of the queue from memory, and one indexed read (recent)."""
    core = app[CORE]
    status = core.status()
    connection = core.connection
    counters = core.counters()
    tasks = {TaskState.QUEUED.value: counters.queue_depth}
    tasks.update((state.value, count) for state, count in counters.launched.items() if count)
    ended = counters.ended
    node_count, nodes = await core.node_page(0, NODE_ROWS, by_hostname=True)
    return {
        "time": _now(),
        "master": status.master,
        "scheduler": {
            "hostname": status.scheduler.hostname,
            "is_online": status.scheduler.is_online,
            "is_paused": status.scheduler.is_paused,
            "connection": connection.state.value,
            "framework_id": connection.framework_id,
            "last_error": connection.last_error,
            "subscriptions": connection.subscriptions,
            "reconnects": connection.reconnects,
        },
        "queue_depth": status.queue_depth,
        "resources": None if status.resources is msgspec.UNSET else status.resources,
        "leader": core.leader(),
        "tasks": tasks,
        "counters": {
            "offers_received": counters.offers_received,
            "offers_accepted": counters.offers_accepted,
            "offers_declined": counters.offers_declined,
            "offers_rescinded": counters.offers_rescinded,
            "offer_passes": counters.offer_passes,
            "launches": counters.launches,
            "status_updates": counters.status_updates,
            "finished": ended.get(TaskState.FINISHED, 0),
            "cancelled": ended.get(TaskState.CANCELED, 0),
            "failed": sum(
                count
                for state, count in ended.items()
                if state not in (TaskState.FINISHED, TaskState.CANCELED, TaskState.KILLED)
            ),
        },
        "suppressed": counters.offers_suppressed,
        "nodes": {"count": node_count, "items": nodes},
        "queue": [
            {
                "id": task.id,
                "name": task.name,
                "priority": task.priority,
                "cpus": task.shape.cpus,
                "mem": task.shape.mem,
                "disk": task.shape.disk,
                "gpus": task.shape.gpus,
                "attempts": task.attempts,
                "waiting_reason": task.waiting_reason,
            }
            for task in core.queue_head(QUEUE_ROWS)
        ],
        "recent": [_recent(view) for view in await core.recent_tasks(RECENT_ROWS)],
    }


def _now() -> str:
    """The current time as the task views write times (UTC, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _recent(view: TaskView) -> dict[str, Any]:
    status = view.last_status
    return {
        "id": view.id,
        "name": view.name,
        "state": view.state,
        "hostname": view.hostname,
        "attempts": view.attempts,
        "attempt_classes": [a.failure_class for a in view.attempt_history if a.failure_class],
        "cpus": view.cpus,
        "mem": view.mem,
        "waiting_reason": view.waiting_reason,
        "message": status.message if status is not None else None,
        "reason": status.reason if status is not None else None,
        "last_modified": view.last_modified,
    }


# --- the hub -----------------------------------------------------------------------------------


class _Subscriber:
    __slots__ = ("latest", "ready")

    def __init__(self) -> None:
        self.latest: bytes | None = None
        self.ready = asyncio.Event()


class DashboardHub:
    """Builds snapshots while pages watch and hands each page the latest one."""

    def __init__(self, app: web.Application, interval: float = SNAPSHOT_INTERVAL) -> None:
        self._app = app
        self.interval = interval
        self.assets: dict[str, Asset] = {}
        self._subscribers: set[_Subscriber] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self.refusals = BurstLog(log, "dashboard_stream_refused")

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> _Subscriber:
        subscriber = _Subscriber()
        if self._closed:
            subscriber.ready.set()
            return subscriber
        self._subscribers.add(subscriber)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick(), name="dashboard-snapshots"
            )
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def next(self, subscriber: _Subscriber) -> bytes | None:
        """The next snapshot event for this subscriber; None once the hub closes."""
        await subscriber.ready.wait()
        subscriber.ready.clear()
        if self._closed:
            return None
        data, subscriber.latest = subscriber.latest, None
        return data

    async def _tick(self) -> None:
        while self._subscribers and not self._closed:
            started = time.perf_counter()
            try:
                snapshot = await build_snapshot(self._app)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:  # once per failing streak, not once a second
                    log.warning("dashboard_snapshot_failed", error=repr(exc))
                self._failing = True
            else:
                self._failing = False
                data = b"event: snapshot\ndata: " + _encoder.encode(snapshot) + b"\n\n"
                for subscriber in self._subscribers:
                    subscriber.latest = data
                    subscriber.ready.set()
            await asyncio.sleep(max(0.0, self.interval - (time.perf_counter() - started)))

    async def close(self) -> None:
        """End every stream (on shutdown: aiohttp waits for open handlers) and stop building."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.ready.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None


DASHBOARD = web.AppKey("dashboard", DashboardHub)


async def dashboard_context(app: web.Application) -> AsyncIterator[None]:
    hub = app[DASHBOARD]
    hub.assets = await asyncio.to_thread(_read_assets, auth_mode(app[CONFIG]))
    try:
        yield
    finally:
        await hub.close()


async def _close_streams(app: web.Application) -> None:
    await app[DASHBOARD].close()


def setup_dashboard(app: web.Application) -> DashboardHub:
    hub = DashboardHub(app)
    app[DASHBOARD] = hub
    app.on_shutdown.append(_close_streams)
    return hub


# --- views -------------------------------------------------------------------------------------


def _asset_response(request: web.Request, name: str) -> web.Response:
    asset = request.app[DASHBOARD].assets.get(name)
    if asset is None:
        raise web.HTTPServiceUnavailable(
            text="The dashboard is starting; reload in a moment.\n", content_type="text/plain"
        )
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


async def get_page(request: web.Request) -> web.Response:
    return _asset_response(request, "dashboard.html")


async def get_css(request: web.Request) -> web.Response:
    return _asset_response(request, "dashboard.css")


async def get_js(request: web.Request) -> web.Response:
    return _asset_response(request, "dashboard.js")


async def get_state(request: web.Request) -> web.Response:
    return web.Response(
        body=_encoder.encode(await build_snapshot(request.app)),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def get_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[DASHBOARD]
    limit = request.app[CONFIG].api.max_event_streams
    if hub.watchers >= limit:
        hub.refusals.note(limit=limit)
        raise text_error(
            web.HTTPServiceUnavailable,
            f"Too many dashboard event streams: at most {limit} are open at once "
            "(api.max_event_streams); retry shortly.",
            headers={"Retry-After": "5"},
        )
    subscriber = hub.subscribe()  # counted before the first await: the limit holds
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        while True:
            data = await hub.next(subscriber)
            if data is None:
                break
            await response.write(data)
    except (ConnectionResetError, RuntimeError):
        pass  # the page went away (aiohttp raises one of these when writing to a closed socket)
    finally:
        hub.unsubscribe(subscriber)
    return response
