"""Several real daemon processes electing their leader in a real PostgreSQL (``ha.dsn``).

The PostgreSQL state backend does not exist yet, so each instance keeps its state in its own
SQLite file while the election runs in the shared database. To fail over to the same framework,
the instances after the first start from a copy of the first one's database (made once it has
stored its framework id): as after ``state copy``, they resubscribe with that id. What these
tests show is the election, the hand-over and Mesos's fencing, not shared state.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from daemon_process import DaemonProcess, write_config
from pgserver import PgDatabase
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster

LEASE = 2.0
RENEW = 0.25


class Instance:
    """One daemon process with its own SQLite file, its own port and the shared election."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        sim: SimulatedCluster,
        db: PgDatabase | None,
        *,
        api: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        **ha: Any,
    ) -> None:
        """``state``: the instance's ``state`` section (default: its own SQLite file; with the
        PostgreSQL backend, pass ``dsn=None, password_file=None``: it elects in ``state.dsn``).
        ``ha``: the ``ha`` settings to change; None leaves one out."""
        self.name = name
        self.port = free_port()
        self.state_path = tmp_path / f"{name}.db"
        ha_settings: dict[str, Any] = {}
        if db is not None:
            ha_settings = {
                "dsn": db.dsn,
                "password_file": str(db.password_file),
                "instance": name,
                "lease_seconds": LEASE,
                "renew_seconds": RENEW,
                **ha,
            }
            ha_settings = {key: value for key, value in ha_settings.items() if value is not None}
        sections: dict[str, dict[str, Any]] = {
            "api": {"port": self.port, **(api or {})},
            "state": state or {"path": str(self.state_path)},
            "mesos": {
                "master": sim.url,
                "hostname": f"{name}.test",
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
            },
        }
        if ha_settings:
            sections["ha"] = ha_settings
        config = write_config(tmp_path / f"{name}.yaml", **sections)
        self.process = DaemonProcess(config, self.port, tmp_path / f"{name}.log")

    @property
    def url(self) -> str:
        return self.process.url

    def start(self) -> None:
        self.process.start()

    async def wait_online(self, timeout: float = 10.0) -> None:
        """Until ``/status/`` says subscribed: the framework id is committed by then."""

        async def online() -> bool:
            status, body = await self.get("/status/")
            return status == 200 and bool(body["scheduler"]["is_online"])

        await until(online, timeout, f"{self.name} is subscribed")

    def copy_state_from(self, other: Instance) -> None:
        """Start from ``other``'s database as it is now (it may be running: SQLite's backup).
        Wait for ``other.wait_online()`` first, or the framework id may not be in it yet."""
        source = sqlite3.connect(other.state_path)
        target = sqlite3.connect(self.state_path)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def exit_code(self, timeout: float = 20.0) -> int:
        proc = self.process.proc
        assert proc is not None
        return await asyncio.to_thread(proc.wait, timeout)

    def events(self) -> list[dict[str, Any]]:
        text = self.process.log_path.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)  # poll interval of the wait for the condition


def live_subscription(sim: SimulatedCluster) -> object | None:
    """The one live subscription (its stream), to tell a new one from the old."""
    live = [fw.subscription for fw in sim.frameworks() if fw.subscription is not None]
    assert len(live) <= 1, "more than one subscribed framework"
    return live[0] if live else None


def subscribed_framework(sim: SimulatedCluster) -> str | None:
    """The id of the one framework with a live subscription, if any."""
    live = [fw.id for fw in sim.frameworks() if fw.subscription is not None]
    assert len(live) <= 1, f"more than one subscribed framework: {live}"
    return live[0] if live else None


async def role_of(instance: Instance) -> str | None:
    try:
        status, body = await instance.get("/leader/")
    except aiohttp.ClientConnectionError:
        return None
    return str(body["this"]["role"]) if status == 200 else None
