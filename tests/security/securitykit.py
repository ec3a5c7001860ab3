"""Helpers of the security tests: a token file, configs, and the daemon in-process against the
simulated cluster on a real loopback port (what the fuzzer and the contract tests talk to)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from scale_scheduler.api.app import build_app
from scale_scheduler.api.keys import CONNECTION
from scale_scheduler.daemon.config import Config, parse_config
from scale_scheduler.simulator import SimulatedCluster

TOKEN = "s3cr3t-api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SIM: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.05,
    "task_start_delay": 0.02,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "default_refuse_seconds": 0.2,
    "seed": 9,
}


def token_file(tmp_path: Path, text: str = TOKEN + "\n") -> Path:
    path = tmp_path / "api-token"
    path.write_text(text, encoding="utf-8")
    return path


def daemon_config(tmp_path: Path, master: str, **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "mesos": {
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


@dataclass
class RunningDaemon:
    app: web.Application
    url: str  # no trailing slash
    sim: SimulatedCluster


@asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    *,
    agents: int = 4,
    sim: dict[str, Any] | None = None,
    subscribed: bool = True,
    **sections: Any,
) -> AsyncIterator[RunningDaemon]:
    """The daemon's own wiring (store, native driver, core) against a simulated cluster, served
    on 127.0.0.1 on a free port; yields once the framework is subscribed (unless told not to
    wait for it)."""
    async with SimulatedCluster(agents=agents, **{**SIM, **(sim or {})}) as cluster:
        config = daemon_config(tmp_path, cluster.url, **sections)
        app = build_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            if subscribed:
                await cluster.wait_until(lambda: app[CONNECTION].subscribed, timeout=10)
            yield RunningDaemon(app, f"http://127.0.0.1:{port}", cluster)
        finally:
            await runner.cleanup()
