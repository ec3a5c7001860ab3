"""Test kit of the pymesos driver: configs, a scripted master, config files and log lines (the
recording handler, the in-memory id store and ``eventually`` are re-exported from ``daemonkit``).

Importable on every Python: it does not import pymesos. Test modules that need pymesos call
``require_pymesos()`` first, which skips them where pymesos cannot be imported (Python 3.11+).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import daemonkit
import pytest
from aiohttp import web
from daemonkit import MemoryIdStore as MemoryIdStore  # re-exported for the pymesos tests
from daemonkit import RecordingHandler as RecordingHandler
from daemonkit import eventually as eventually

from scale_scheduler.daemon.service.config import Config

API_URL = "http://sched.test:8000/"

MakeDriver = Callable[..., Any]
"""``make_driver(master, store=, framework_id=, config=, settings=, **mesos)`` (conftest)."""

SIM: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.2,
    "task_start_delay": 0.04,
    "kill_delay": 0.03,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "seed": 13,
}


def require_pymesos() -> None:
    """Skip the calling test module where pymesos cannot be imported.

    Under ``CI`` on Python 3.10 a missing pymesos fails instead: the pymesos venv is broken.
    """
    if sys.version_info < (3, 11) and os.environ.get("CI") and not pymesos_importable():
        pytest.fail("pymesos is not installed in this Python 3.10 venv (make install310)")
    pytest.importorskip(
        "pymesos.scheduler", reason="pymesos installs on Python 3.10 only (mesos.driver: pymesos)"
    )


def pymesos_importable() -> bool:
    try:
        from pymesos import MesosSchedulerDriver  # noqa: F401
    except ImportError:
        return False
    return True


def console_script(name: str = "scale-scheduler") -> str:
    """The console script installed next to the running interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}")
    return str(path)


def driver_config(**mesos: Any) -> Config:
    """A config whose user and host name need no lookups, with ``mesos.driver: pymesos``."""
    return daemonkit.driver_config(**{"driver": "pymesos", **mesos})


class ScriptedMaster:
    """A fake master whose streams carry exactly ``script`` (a list of events) and stay open.

    ``hang = True`` accepts SUBSCRIBE and never answers; ``redirect_to`` answers it 307 with that
    ``host:port``. Calls are answered 202 and recorded with the client's address and port;
    ``keepalive_timeout`` is how long an idle call connection is kept open by this master.
    """

    def __init__(self, keepalive_timeout: float = 75.0) -> None:
        self.script: list[dict[str, Any]] = []
        self.hang = False
        self.redirect_to: str | None = None
        self.keepalive_timeout = keepalive_timeout
        self.subscribes: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.call_peers: list[Any] = []
        self.url = ""
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self._scheduler)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=0.5,
            keepalive_timeout=self.keepalive_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    @property
    def open_connections(self) -> int:
        """Connections open to this master (the event stream's included)."""
        assert self._runner is not None
        assert self._runner.server is not None
        return len(self._runner.server.connections)

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _scheduler(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("type") != "SUBSCRIBE":
            self.calls.append(body)
            transport = request.transport
            self.call_peers.append(transport.get_extra_info("peername") if transport else None)
            return web.Response(status=202)
        self.subscribes.append(body)
        if self.redirect_to is not None:
            location = f"//{self.redirect_to}/api/v1/scheduler"
            return web.Response(status=307, headers={"Location": location})
        if self.hang:
            await self._closing.wait()
            return web.Response(status=503)
        response = web.StreamResponse(headers={"Mesos-Stream-Id": f"stream-{len(self.subscribes)}"})
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        for event in self.script:
            payload = json.dumps(event).encode()
            await response.write(b"%d\n%s" % (len(payload), payload))
        await self._closing.wait()
        return response


def subscribed_event(framework_id: str, heartbeat: float = 0.2) -> dict[str, Any]:
    return {
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": framework_id},
            "heartbeat_interval_seconds": heartbeat,
        },
    }


def write_config(path: Path, master: str, state: Path, **mesos: Any) -> Path:
    """A daemon config file with ``mesos.driver: pymesos``, JSON logs and a free API port."""
    values: dict[str, Any] = {"driver": "pymesos", "master": master, "user": "svc"}
    values.update(mesos)
    raw = {
        "mesos": values,
        "api": {"host": "127.0.0.1", "port": 0},
        "state": {"path": str(state)},
        "logging": {"format": "json", "level": "info"},
        # Short filters, as in the core's end-to-end tests: an offer declined idle comes back soon.
        "scheduler": {"refuse_seconds": 0.2, "idle_refuse_seconds": 0.5, "revive_interval": 0.1},
    }
    path.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    return path


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon's output file (other lines are skipped)."""
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
