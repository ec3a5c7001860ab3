"""``/healthz`` and ``/readyz``: liveness always, readiness only with the database open and the
framework subscribed, flipping as the simulated master goes away and comes back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from obskit import SIM, Client, Daemon, daemon_config

from scale_scheduler.api.app import STORE, build_app
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.simulator import SimulatedCluster

ClientFactory = Callable[[web.Application], Awaitable[Client]]


async def _readyz(client: Client) -> tuple[int, str]:
    response = await client.get("/readyz")
    assert response.content_type == "text/plain"
    return response.status, await response.text()


async def test_healthz_answers_while_the_loop_runs(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(build_app(make_config(), connect_mesos=False))
    response = await client.get("/healthz")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert (await response.text()).startswith("ok\n")


async def test_readyz_without_mesos_names_the_reason(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(build_app(make_config(), connect_mesos=False))
    status, text = await _readyz(client)
    assert status == 503
    lines = text.splitlines()
    assert lines[0] == "not ready"
    assert any(line.startswith("mesos: not subscribed") for line in lines)
    assert not any(line.startswith("database") for line in lines)


async def test_readyz_reports_a_closed_database(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(build_app(make_config(), connect_mesos=False))
    await client.app[STORE].close()  # type: ignore[index]
    status, text = await _readyz(client)
    assert status == 503
    assert "database: not open" in text
    assert (await client.get("/healthz")).status == 200  # alive, though not ready


async def test_readyz_flips_as_the_master_goes_away_and_comes_back(tmp_path: Path) -> None:
    sim = SimulatedCluster(agents=1, **SIM)
    await sim.start()
    port = sim.masters[0].port
    daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
    try:
        client = await daemon.start()
        status, text = await _readyz(client)
        assert status == 200, text
        assert text.startswith("ready\n")
        assert daemon.core.driver.status.framework_id in text

        await sim.stop()
        await daemon.until(lambda: not daemon.core.driver.status.subscribed, timeout=10)
        status, text = await _readyz(client)
        assert status == 503
        assert "mesos: not subscribed to the master at 127.0.0.1:" in text
        assert "database" not in text
        assert (await client.get("/healthz")).status == 200

        sim = SimulatedCluster(agents=1, port=port, **SIM)  # the same address comes back
        await sim.start()
        daemon.sim = sim
        await daemon.until(lambda: daemon.core.driver.status.subscribed, timeout=15)
        status, text = await _readyz(client)
        assert status == 200, text
    finally:
        await daemon.stop()
        await sim.stop()
