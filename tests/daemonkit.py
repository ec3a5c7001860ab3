"""Shared test kit: the whole daemon in process against the simulated cluster, and the driver
doubles both driver suites use.

- ``running_daemon(tmp_path, ...)``: a simulated cluster plus the daemon's own ``build_app``
  wiring (store, driver, core, API) served on 127.0.0.1, yielding a ``Daemon``.
- ``Daemon``: start/stop on one database (a stop then a start is a process restart), ``submit``,
  ``until(predicate)``, ``scrape`` and small readers of task state.
- ``RecordingHandler``, ``MemoryIdStore``, ``eventually``, ``on_new_leader``, ``driver_config``:
  doubles for tests that drive a Mesos driver directly.

Importable on Python 3.10 and 3.11+; it does not import pymesos.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from scale_scheduler.api.app import CONNECTION, SCHEDULER_CORE, STORE, build_app
from scale_scheduler.daemon.mesos.driver import Subscription
from scale_scheduler.daemon.mesos.mesos_types import Offer, TaskStatus
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.service.config import Config, MesosConfig, parse_config
from scale_scheduler.simulator import SimulatedCluster

SIM: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.05,
    "task_start_delay": 0.02,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "default_refuse_seconds": 0.2,
    "seed": 5,
}
"""Simulator settings with short intervals; suites override single keys (``seed`` etc.)."""


def daemon_config(
    tmp_path: Path, master: str, *, driver: str = "native", **sections: dict[str, Any]
) -> Config:
    """A daemon config with short filters and backoffs on ``tmp_path``'s database; ``sections``
    are merged into the defaults section by section."""
    raw: dict[str, dict[str, Any]] = {
        "mesos": {
            "driver": driver,
            "master": master,
            "user": "svc",
            "hostname": "sched.test",
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "request_timeout": 5.0,
        },
        "state": {"path": str(tmp_path / "state.db")},
        "api": {"host": "127.0.0.1", "port": 0},
        "logging": {"format": "console", "level": "warning"},
        "scheduler": {
            "refuse_seconds": 0.2,
            "idle_refuse_seconds": 0.5,
            "revive_interval": 0.1,
            "launch_timeout": 5.0,
            "reconcile_retry": 0.2,
            "agents_refresh_interval": 0.5,
        },
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return parse_config(raw, environ={})


class ApiClient:
    """``app`` served as the daemon's service serves it, through aiohttp's public runner API
    (``web.AppRunner`` without access log, whose handlers are not cancelled when a client goes
    away, unlike ``TestServer``'s), on 127.0.0.1 at a free port; and a client session on it.

    Offers what the tests use of aiohttp's ``TestClient``: ``get``, ``post``, ``patch``,
    ``put``, ``delete`` and ``request`` with a path, ``make_url``, ``app``, ``session``.
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._root: URL | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        host, port = self._runner.addresses[0][:2]
        self._root = URL(f"http://{host}:{port}")
        self._session = aiohttp.ClientSession(base_url=self._root)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._runner.cleanup()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the API is not served"
        return self._session

    def make_url(self, path: str) -> URL:
        assert self._root is not None, "the API is not served"
        return self._root.join(URL(path))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


Client = TestClient[web.Request, web.Application] | ApiClient
"""An API client: ``aiohttp_client``'s, or a ``Daemon``'s."""


class Daemon:
    """The in-process daemon (``build_app(config)``) on one database, served on 127.0.0.1 on a
    free port. ``stop`` then ``start`` is a process restart; ``sim`` may be replaced between."""

    def __init__(self, config: Config, sim: SimulatedCluster) -> None:
        self.config = config
        self.sim = sim
        self._client: ApiClient | None = None

    async def start(self, *, wait_subscribed: bool = True) -> ApiClient:
        client = ApiClient(build_app(self.config))
        await client.start()
        self._client = client
        if wait_subscribed:
            try:
                await self.until(lambda: client.app[CONNECTION].subscribed, timeout=10)
            except BaseException:
                await self.stop()
                raise
        return client

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @property
    def client(self) -> ApiClient:
        assert self._client is not None, "the daemon is not running"
        return self._client

    @property
    def app(self) -> web.Application:
        return self.client.app

    @property
    def url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return str(self.client.make_url("/")).rstrip("/")

    @property
    def core(self) -> SchedulerCore:
        return self.app[SCHEDULER_CORE]

    async def until(self, predicate: Callable[[], Any], timeout: float = 20) -> None:
        await self.sim.wait_until(predicate, timeout=timeout, interval=0.02)

    async def submit(self, tasks: list[dict[str, Any]]) -> list[int]:
        response = await self.client.post("/queue/", json=tasks)
        assert response.status == 201, await response.text()
        return [task["id"] for task in await response.json()]

    async def task(self, task_id: int) -> dict[str, Any]:
        body: dict[str, Any] = await (await self.client.get(f"/tasks/{task_id}/")).json()
        return body

    async def states(self, ids: list[int]) -> list[str]:
        return [(await self.task(task_id))["state"] for task_id in ids]

    async def count(self, state: str) -> int:
        """Tasks in ``state`` in the daemon's database."""
        row = await self.app[STORE].fetchone("SELECT COUNT(*) FROM tasks WHERE state = ?", (state,))
        assert row is not None
        return int(row[0])

    async def scrape(self) -> Samples:
        return await scrape(self.client)


@asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    *,
    agents: int = 4,
    sim: dict[str, Any] | None = None,
    driver: str = "native",
    subscribed: bool = True,
    **sections: dict[str, Any],
) -> AsyncIterator[Daemon]:
    """A simulated cluster of ``agents`` (``SIM`` updated with ``sim``) and the daemon against
    it (``daemon_config`` with ``driver`` and ``sections``); yields once the framework is
    subscribed, unless told not to wait for it. Both are stopped on the way out."""
    async with SimulatedCluster(agents=agents, **{**SIM, **(sim or {})}) as cluster:
        daemon = Daemon(daemon_config(tmp_path, cluster.url, driver=driver, **sections), cluster)
        await daemon.start(wait_subscribed=subscribed)
        try:
            yield daemon
        finally:
            await daemon.stop()


def task(name: str, **extra: Any) -> dict[str, Any]:
    """A small task for ``POST /queue/``."""
    return {"name": name, "command": "true", "cpus": 0.5, "mem": 64, **extra}


class Samples:
    """One scrape, parsed by prometheus-client's own parser: ``samples["name", {labels}]``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        return self.values[(name, tuple(sorted(labels.items())))]

    def find(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of ``name`` whose labels include ``labels``."""
        return [
            (dict(key), value)
            for (sample, key), value in self.values.items()
            if sample == name and all(dict(key).get(k) == v for k, v in labels.items())
        ]


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Samples(await response.text())


# Doubles for tests that drive a Mesos driver directly (native or pymesos).


def driver_config(**mesos: Any) -> Config:
    """A config whose user and host name need no lookups."""
    values: dict[str, Any] = {"user": "svc", "hostname": "sched.test"}
    values.update(mesos)
    return Config(mesos=MesosConfig(**values))


@dataclass
class RecordingHandler:
    """An ``EventHandler`` that records every callback, in order (with an optional shared log)."""

    order: list[str] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    offers: list[list[Offer]] = field(default_factory=list)
    rescinds: list[str] = field(default_factory=list)
    updates: list[TaskStatus] = field(default_factory=list)
    failures: list[tuple[str | None, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    room: asyncio.Future[None] | None = None
    """What ``backlog_room`` answers: set a future to make the driver stop reading."""

    def on_subscribed(self, subscription: Subscription) -> None:
        self.order.append("subscribed")
        self.subscriptions.append(subscription)

    def on_offers(self, offers: list[Offer]) -> None:
        self.order.append("offers")
        self.offers.append(offers)

    def on_rescind(self, offer_id: str) -> None:
        self.order.append("rescind")
        self.rescinds.append(offer_id)

    def on_update(self, status: TaskStatus) -> None:
        self.order.append("update")
        self.updates.append(status)

    def backlog_room(self) -> Awaitable[None] | None:
        return self.room

    def on_failure(self, agent_id: str | None, executor_id: str | None) -> None:
        self.order.append("failure")
        self.failures.append((agent_id, executor_id))

    def on_error(self, message: str) -> None:
        self.order.append("error")
        self.errors.append(message)

    def on_subscription_lost(self, reason: str) -> None:
        self.order.append("subscription_lost")
        self.losses.append(reason)

    def on_disconnected(self, reason: str) -> None:
        self.order.append("disconnected")
        self.disconnects.append(reason)

    def states(self, task_id: str) -> list[str]:
        return [u.state for u in self.updates if u.task_id.value == task_id]


class MemoryIdStore:
    """A ``FrameworkIdStore`` in memory; ``gate`` (when set) holds saves until it is set."""

    def __init__(self, order: list[str] | None = None) -> None:
        self.saved: list[str] = []
        self.order = order if order is not None else []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def save_framework_id(self, framework_id: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("disk full")
        self.saved.append(framework_id)
        self.order.append("saved")

    async def load_framework_id(self) -> str | None:
        return self.saved[-1] if self.saved else None


def on_new_leader(sim: SimulatedCluster, old_leader: Any, status: Any) -> Callable[[], bool]:
    """True once a master other than ``old_leader`` leads and ``status`` is subscribed to it.

    ZooKeeper may tell a driver before the new master knows it leads; that master then redirects
    to the old one, which accepts a subscription for a moment. Only this end state counts.
    """

    def check() -> bool:
        leader = sim.leader
        return (
            leader is not None
            and leader is not old_leader
            and status.subscribed
            and status.master_port == leader.port
        )

    return check


def gave_up(logs: list[dict[str, Any]]) -> bool:
    """Whether a driver's resubscribe loop has ended for good (captured logs: it logs
    ``mesos_driver_gave_up``, at info, as its last step, so no SUBSCRIBE can follow)."""
    return any(e["event"] == "mesos_driver_gave_up" for e in logs)


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01
) -> None:
    """Wait until ``predicate()`` is true (fails the test after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)  # poll interval of this wait on a condition
