"""The real daemon process: /status/ resources.used becomes what the simulated tasks use."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_process import DaemonProcess, write_config
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster


async def test_status_used_becomes_real_in_the_daemon_process(tmp_path: Path) -> None:
    async with SimulatedCluster(
        agents=2, heartbeat_interval=0.2, allocation_interval=0.05, seed=11
    ) as sim:
        port = free_port()
        config = write_config(
            tmp_path / "config.yaml",
            api={"port": port},
            state={"path": str(tmp_path / "state.db")},
            mesos={"master": sim.url},
            scheduler={"agents_refresh_interval": 0.5},
            usage={"interval": 0.2},
        )
        daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
        daemon.start()
        try:
            await daemon.wait_ready()
            async with aiohttp.ClientSession() as session:
                task = {
                    "name": "busy",
                    "command": "true",
                    "cpus": 1,
                    "mem": 256,
                    "labels": {"sim.outcome": "RUNNING", "sim.cpus_used": "0.5"},
                }
                async with session.post(f"{daemon.url}/queue/", json=task) as response:
                    assert response.status == 201, await response.text()

                async def used() -> dict[str, Any]:
                    async with session.get(f"{daemon.url}/status/") as response:
                        body = await response.json()
                    resources = body.get("resources") or {}
                    return dict(resources.get("used") or {})

                deadline = time.monotonic() + 20
                while (await used()).get("cpus", 0.0) < 0.45:
                    assert time.monotonic() < deadline, daemon.logs()
                    await asyncio.sleep(0.05)  # poll interval of the wait for the usage
                final = await used()
                async with session.get(f"{daemon.url}/usage/") as response:
                    usage = await response.json()
        finally:
            daemon.stop_quietly()
    assert final["cpus"] == pytest.approx(0.5, rel=0.05)
    assert final["mem"] == pytest.approx(128.0)  # the simulator's default: half of 256 MiB
    assert usage["agents_total"] == usage["agents_answered"] == 2
    assert usage["used"] == final
