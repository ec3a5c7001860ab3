"""Harness of the reliability scenarios: the real daemon (``scale-scheduler run``) as a subprocess
against an in-process ``SimulatedCluster``, its REST API, a read-only view of its database, its
JSON log, and the end-of-run audit ("every task is accounted for exactly once").

The audit itself is ``auditkit``'s (shared with the scenarios of several instances).
The simulator lives in the test's event loop, so its record (``launch_counts``, calls, SUBSCRIBEs)
is read directly; the daemon is only reached the way an operator would reach it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from auditkit import SIM, api_task_states, audit
from daemon_process import DaemonProcess, write_config
from pgserver import PgDatabase
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster

__all__ = ["SIM", "Daemon", "audit", "launches", "task_body"]


def task_body(name: str, **extra: Any) -> dict[str, Any]:
    """One task as ``POST /queue/`` takes it: half a CPU, so eight fit on a 4-CPU agent."""
    return {"name": name, "command": "true", "cpus": 0.5, "mem": 64, **extra}


def state_section(db_path: Path, database: PgDatabase | None) -> dict[str, Any]:
    """The daemon's ``state`` settings: SQLite at ``db_path``, or ``database`` on PostgreSQL."""
    if database is None:
        return {"path": str(db_path)}
    return {
        "backend": "postgresql",
        "dsn": database.dsn,
        "password_file": str(database.password_file),
    }


class Daemon:
    """The daemon process on one database and one API port, restartable like under systemd.
    ``database``: keep the state in that PostgreSQL database instead of SQLite."""

    def __init__(
        self,
        tmp_path: Path,
        master: str,
        *,
        mesos: dict[str, Any] | None = None,
        database: PgDatabase | None = None,
        **sections: Any,
    ) -> None:
        port = free_port()
        self.database = database
        self.db_path = tmp_path / "state.db"
        self.log_path = tmp_path / "daemon.log"
        scheduler = {
            "refuse_seconds": 0.2,
            "idle_refuse_seconds": 0.5,
            "revive_interval": 0.1,
            "launch_timeout": 5.0,
            "reconcile_retry": 0.2,
            "agents_refresh_interval": 0.5,
            **sections.pop("scheduler", {}),
        }
        config = write_config(
            tmp_path / "config.yaml",
            api={"host": "127.0.0.1", "port": port},
            state=state_section(self.db_path, database),
            mesos={
                "master": master,
                "user": "svc",
                "hostname": "sched.test",
                "backoff_initial": 0.05,
                "backoff_max": 0.5,
                "request_timeout": 2.0,
                **(mesos or {}),
            },
            scheduler=scheduler,
            **sections,
        )
        self.process = DaemonProcess(config, port, self.log_path)
        self.url = self.process.url
        self.session: aiohttp.ClientSession | None = None

    # -- process ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.process.start()
        await self.process.wait_ready(timeout=30)
        if self.session is None:
            self.session = aiohttp.ClientSession()
        await self.wait_subscribed()

    async def kill9(self) -> None:
        await asyncio.to_thread(self.process.kill9)

    def alive(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None

    async def close(self) -> int | None:
        """SIGTERM (the daemon must exit 0), then close the client session."""
        code: int | None = None
        if self.alive():
            code = await asyncio.to_thread(self.process.terminate)
        self.process.stop_quietly()
        if self.session is not None:
            await self.session.close()
            self.session = None
        return code

    # -- API ----------------------------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.request(method, self.url + path, json=body) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def get(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.get("/status/")
        return body

    async def submit(self, tasks: list[dict[str, Any]]) -> list[int]:
        status, body = await self.request("POST", "/queue/", tasks)
        assert status == 201, body
        return [view["id"] for view in body]

    async def api_task_states(self) -> dict[int, str]:
        """Every task's state as ``GET /tasks/`` lists them, page by page."""
        return await api_task_states(self.get)

    async def node_id(self, hostname: str) -> int | None:
        body = await self.get(f"/nodes/?hostname={hostname}")
        return body["results"][0]["id"] if body["results"] else None

    async def wait_subscribed(self, timeout: float = 20) -> None:
        await self.until_api(lambda s: s["scheduler"]["is_online"], timeout)

    async def until_api(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """Poll ``/status/`` until ``predicate`` holds; returns that status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self.alive():
                raise AssertionError(f"the daemon exited: {self.process.logs()}")
            status = await self.status()
            if predicate(status):
                return status
            if loop.time() > deadline:
                raise AssertionError(f"/status/ never satisfied the condition: {status}")
            await asyncio.sleep(0.05)  # poll interval of this wait on a condition

    # -- database (read-only, off the loop) ---------------------------------------------------

    async def db(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` parameters) from the daemon's database, whichever it is."""
        if self.database is not None:
            return await self._pg(sql, params)

        def query() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
            try:
                return list(conn.execute(sql, tuple(params)))
            finally:
                conn.close()

        return await asyncio.to_thread(query)

    async def _pg(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        assert self.database is not None
        parts = sql.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        connection = await self.database.connect()
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *params)]
        finally:
            await connection.close()

    async def framework_id(self) -> str | None:
        rows = await self.db("SELECT framework_id FROM framework WHERE id = 1")
        return str(rows[0][0]) if rows else None

    async def db_task_states(self) -> dict[int, str]:
        return {int(i): str(s) for i, s in await self.db("SELECT id, state FROM tasks")}

    # -- log ----------------------------------------------------------------------------------

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (every run appends to one file), optionally one event."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out


def launches(sim: SimulatedCluster) -> int:
    return sum(sim.record.launch_counts.values())
