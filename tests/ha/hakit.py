"""Several real daemon processes electing their leader in a real PostgreSQL.

Two deployments:

- ``Instance(..., db)``: the election in ``ha.dsn`` while each instance keeps its state in its
  own SQLite file. To fail over to the same framework, the instances after the first start
  from a copy of the first one's database (made once it has stored its framework id): as after
  ``state copy``, they resubscribe with that id. What this shows is the election, the
  hand-over and Mesos's fencing, not shared state.
- ``Instance(..., db, shared_state=True)``: the production shape, every instance on
  ``state.backend: postgresql`` in the one database (the election runs there too). ``Fleet``
  is such a deployment as the audit (``auditkit``) sees it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from auditkit import api_task_states
from daemon_process import DaemonProcess, write_config
from pgserver import PgDatabase
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster

LEASE = 2.0
RENEW = 0.25

FAST_SCHEDULER: dict[str, Any] = {
    "refuse_seconds": 0.2,
    "idle_refuse_seconds": 0.5,
    "revive_interval": 0.1,
    "launch_timeout": 5.0,
    "reconcile_retry": 0.2,
    "agents_refresh_interval": 0.5,
}
"""The daemon's timings for scenarios whose tasks must run and finish within seconds."""


class Instance:
    """One daemon process on its own port in the shared election, with its own SQLite file,
    or (``shared_state``) on the PostgreSQL state every instance shares."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        sim: SimulatedCluster,
        db: PgDatabase | None,
        *,
        api: dict[str, Any] | None = None,
        shared_state: bool = False,
        scheduler: dict[str, Any] | None = None,
        **ha: Any,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.state_path = tmp_path / f"{name}.db"
        ha_settings: dict[str, Any] = {}
        state: dict[str, Any] = {"path": str(self.state_path)}
        if db is not None and shared_state:
            state = {
                "backend": "postgresql",
                "dsn": db.dsn,
                "password_file": str(db.password_file),
            }
        elif db is not None:
            ha["dsn"] = db.dsn
            ha["password_file"] = str(db.password_file)
        if db is not None:
            ha_settings = {
                "instance": name,
                "lease_seconds": LEASE,
                "renew_seconds": RENEW,
                **ha,
            }
        sections: dict[str, dict[str, Any]] = {
            "api": {"port": self.port, **(api or {})},
            "state": state,
            "mesos": {
                "master": sim.url,
                "hostname": f"{name}.test",
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
            },
        }
        if ha_settings:
            sections["ha"] = ha_settings
        if scheduler:
            sections["scheduler"] = scheduler
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

    def alive(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every run of this instance (one file, appended)."""
        text = self.process.log_path.read_text(errors="replace")
        events = []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:  # a line cut short by kill -9
                    continue
        return events


class Fleet:
    """Instances sharing one PostgreSQL state, seen as one deployment: the API of whichever
    instance leads (any instance would forward there), and the database read directly."""

    def __init__(self, instances: list[Instance], db: PgDatabase) -> None:
        self.instances = instances
        self.db_ = db

    async def leader(self, timeout: float = 20.0) -> Instance:
        """The one instance that says it leads (waits for one)."""
        found: list[Instance] = []

        async def one_leads() -> bool:
            found[:] = [i for i in self.instances if i.alive() and await role_of(i) == "leader"]
            return len(found) == 1

        await until(one_leads, timeout, "exactly one instance leads")
        return found[0]

    async def get(self, path: str) -> Any:
        status, body = await (await self.leader()).get(path)
        assert status == 200, (path, status, body)
        return body

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.get("/status/")
        return body

    async def api_task_states(self) -> dict[int, str]:
        return await api_task_states(self.get)

    async def db(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        parts = sql.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        connection = await self.db_.connect()
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *params)]
        finally:
            await connection.close()

    async def db_task_states(self) -> dict[int, str]:
        return {int(i): str(s) for i, s in await self.db("SELECT id, state FROM tasks")}


@asynccontextmanager
async def shared_fleet(
    tmp_path: Path, db: PgDatabase, sim: SimulatedCluster
) -> AsyncIterator[tuple[Fleet, str]]:
    """Three instances on one PostgreSQL state: a leads and registers the framework, then b
    and c start as standbys. Yields the fleet and the framework id."""
    instances = [
        Instance(tmp_path, name, sim, db, shared_state=True, scheduler=FAST_SCHEDULER)
        for name in "abc"
    ]
    try:
        first = instances[0]
        first.start()
        await first.process.wait_ready(timeout=30)
        await first.wait_online(timeout=30)
        framework_id = subscribed_framework(sim)
        assert framework_id is not None
        for other in instances[1:]:
            other.start()
        for other in instances[1:]:
            await other.process.wait_ready(timeout=30)
        yield Fleet(instances, db), framework_id
    finally:
        for instance in instances:
            proc = instance.process.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            instance.process.stop_quietly()


def tcp_ports_of(pid: int) -> set[int]:
    """The local TCP ports of process ``pid``'s sockets (Linux: its fds and /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def terminate_backends_of(db: PgDatabase, pid: int) -> int:
    """``pg_terminate_backend`` of every session process ``pid`` has open to ``db`` (its
    leadership and state connections); how many were ended."""
    ports = sorted(tcp_ports_of(pid))
    admin = await db.server.admin()
    try:
        ended = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND client_port = ANY($2::int[])",
            db.name,
            ports,
        )
    finally:
        await admin.close()
    return sum(1 for row in ended if row[0])


async def until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    detail: Callable[[], str] | None = None,
) -> None:
    """Wait for ``predicate``; on timeout fail naming ``what`` (and ``detail()``, e.g. the
    instances' log tails, so a failure in CI can be read without a replay)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"not within {timeout}s: {what}{extra}")
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


@dataclass
class Ledger:
    """What the clients of a scenario were told: the tasks acknowledged (201), and the names
    whose fate they were not told (503, or no answer): those may or may not exist."""

    acked: dict[int, str] = field(default_factory=dict)
    unsure: set[str] = field(default_factory=set)
    refused: int = 0
    """Batches answered 503 (``text/plain``, with ``Retry-After``)."""
    unexpected: list[str] = field(default_factory=list)
    acked_through_standby: int = 0

    def check_against(self, stored: dict[int, str]) -> None:
        """Every acknowledged task is stored under its id; any other stored task is one the
        clients were not told about."""
        assert self.unexpected == [], self.unexpected[:5]
        lost = {i: n for i, n in self.acked.items() if stored.get(i) != n}
        assert not lost, f"acknowledged tasks lost: {dict(list(lost.items())[:10])}"
        others = {n for i, n in stored.items() if i not in self.acked}
        assert others <= self.unsure, f"tasks nobody submitted: {sorted(others - self.unsure)[:10]}"


async def submit_forever(
    fleet: Fleet,
    ledger: Ledger,
    stop: asyncio.Event,
    rng: random.Random,
    *,
    client: int = 0,
    batch: int = 3,
    frozen: set[str] | None = None,
) -> None:
    """Submit batches of ``task_body`` tasks to a random running instance (a standby two times
    in three, while three run) until ``stop``, booking each answer in ``ledger``. Instances
    named in ``frozen`` (SIGSTOPped) are skipped."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        number = 0
        while not stop.is_set():
            targets = [i for i in fleet.instances if i.alive() and i.name not in (frozen or set())]
            if not targets:
                await asyncio.sleep(0.05)  # paced: every instance is down for a moment
                continue
            target = rng.choice(targets)
            number += 1
            names = [f"c{client}-b{number}-t{i}" for i in range(batch)]
            try:
                async with session.get(target.url + "/leader/") as response:
                    role = (await response.json())["this"]["role"]
                async with session.post(
                    target.url + "/queue/", json=[task_body(name) for name in names]
                ) as response:
                    if response.status == 201:
                        views = await response.json()
                        ledger.acked.update((view["id"], view["name"]) for view in views)
                        ledger.acked_through_standby += len(views) if role == "standby" else 0
                    elif (
                        response.status == 503
                        and "Retry-After" in response.headers
                        and response.content_type == "text/plain"
                    ):
                        ledger.refused += 1
                        ledger.unsure.update(names)
                    else:
                        ledger.unexpected.append(f"{response.status}: {await response.text()}")
            except (aiohttp.ClientError, TimeoutError):
                ledger.unsure.update(names)  # the instance died, stopped or was restarting
            await asyncio.sleep(0.1)  # paced: a steady trickle of tasks through the failovers


async def restart_exited(fleet: Fleet, stop: asyncio.Event, exits: list[int]) -> None:
    """Start again every instance whose process ended, as systemd's ``Restart=on-failure``
    does, until ``stop``; each ended process's exit status goes to ``exits``."""
    while not stop.is_set():
        for instance in fleet.instances:
            proc = instance.process.proc
            if proc is not None and proc.poll() is not None:
                exits.append(proc.returncode)
                instance.start()
        await asyncio.sleep(0.2)  # paced restarts, as systemd's RestartSec


def task_body(name: str) -> dict[str, Any]:
    """One small task as ``POST /queue/`` takes it."""
    return {"name": name, "command": "true", "cpus": 0.5, "mem": 64}
