"""Helpers of the observability tests: a daemon against the simulator, and parsed scrapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from scale_scheduler.api.app import build_app
from scale_scheduler.api.keys import CORE
from scale_scheduler.daemon.config import Config, parse_config
from scale_scheduler.daemon.scheduler_core import SchedulerCore
from scale_scheduler.simulator import SimulatedCluster

Client = TestClient[web.Request, web.Application]

SIM: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.1,
    "task_start_delay": 0.02,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "default_refuse_seconds": 0.2,
    "seed": 11,
}


def daemon_config(tmp_path: Path, master: str, **api: Any) -> Config:
    return parse_config(
        {
            "mesos": {
                "master": master,
                "user": "svc",
                "hostname": "sched.test",
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
                "request_timeout": 5.0,
            },
            "state": {"path": str(tmp_path / "state.db")},
            "api": {"port": 0, **api},
            "logging": {"format": "console", "level": "warning"},
            "scheduler": {
                "refuse_seconds": 0.2,
                "idle_refuse_seconds": 0.5,
                "revive_interval": 0.1,
                "launch_timeout": 5.0,
                "reconcile_retry": 0.2,
                "agents_refresh_interval": 0.3,
            },
        },
        environ={},
    )


class Daemon:
    """The whole daemon (``build_app``: store, native driver, core, API) on a loopback port."""

    def __init__(self, config: Config, sim: SimulatedCluster) -> None:
        self.config = config
        self.sim = sim
        self._client: Client | None = None

    async def start(self, *, wait_subscribed: bool = True) -> Client:
        self._client = TestClient(TestServer(build_app(self.config), host="127.0.0.1"))
        await self._client.start_server()
        if wait_subscribed:
            await self.until(lambda: self.core.driver.status.subscribed, timeout=10)
        return self._client

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    @property
    def url(self) -> str:
        return str(self.client.make_url("/"))

    @property
    def core(self) -> SchedulerCore:
        return self.client.app[CORE]  # type: ignore[index]

    async def until(self, predicate: Any, timeout: float = 20) -> None:
        await self.sim.wait_until(predicate, timeout=timeout, interval=0.02)

    async def submit(self, tasks: list[dict[str, Any]]) -> list[int]:
        response = await self.client.post("/queue/", json=tasks)
        assert response.status == 201, await response.text()
        return [task["id"] for task in await response.json()]

    async def scrape(self) -> Samples:
        return await scrape(self.client)


def task(name: str, **extra: Any) -> dict[str, Any]:
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
