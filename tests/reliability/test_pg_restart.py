"""A PostgreSQL restart under load: the real daemon on ``state.backend: postgresql`` while four
clients submit batches and the simulator runs them; the server stops (fast: sessions ended,
open transactions rolled back) for a few seconds, then starts again.

Every batch answered 201 is stored under its ids; every batch answered 503 (``text/plain``, with
``Retry-After``) while the database was away is absent, whole; the daemon reconnects by itself,
the clients carry on, and the audit holds: each task finished, launched exactly once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, audit, task_body

from scale_scheduler.simulator import AgentSpec, SimulatedCluster

CLIENTS = 4
BATCH = 10
DOWN_SECONDS = 7.0
"""Longer than the daemon's wait for a lost database (5 s) before it answers 503."""


@dataclass
class Ledger:
    acked: dict[int, str] = field(default_factory=dict)
    refused: list[list[str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


async def client(index: int, daemon: Daemon, ledger: Ledger, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        batch = 0
        while not stop.is_set():
            batch += 1
            names = [f"c{index}-b{batch}-t{i}" for i in range(BATCH)]
            body = [task_body(name) for name in names]
            async with session.post(daemon.url + "/queue/", json=body) as response:
                if response.status == 201:
                    for view in await response.json():
                        ledger.acked[view["id"]] = view["name"]
                elif response.status == 503 and "Retry-After" in response.headers:
                    assert response.content_type == "text/plain"
                    ledger.refused.append(names)
                else:
                    ledger.unexpected.append(f"{response.status}: {await response.text()}")
            await asyncio.sleep(0.05)  # paced: the submitting spans the outage


async def test_a_postgresql_restart_under_load_loses_no_acknowledged_write(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    server = pg_database.server
    agent = AgentSpec(cpus=4, mem=8192)
    async with SimulatedCluster(agents=4, agent=agent, seed=16, **SIM) as sim:
        daemon = Daemon(tmp_path, sim.url, database=pg_database)
        try:
            await daemon.start()
            ledger = Ledger()
            stop = asyncio.Event()
            runs = [asyncio.create_task(client(i, daemon, ledger, stop)) for i in range(CLIENTS)]
            await sim.wait_until(lambda: len(ledger.acked) >= 200, timeout=30)
            await asyncio.to_thread(server.stop, "fast")
            acked_before_outage = len(ledger.acked)
            await asyncio.sleep(DOWN_SECONDS)  # time must pass: the outage is the scenario
            await asyncio.to_thread(server.start)
            await sim.wait_until(lambda: len(ledger.acked) >= acked_before_outage + 200, timeout=30)
            stop.set()
            await asyncio.gather(*runs)

            assert ledger.unexpected == []
            assert ledger.refused, "no write met the outage"
            stored = dict(await daemon.db("SELECT id, name FROM tasks"))
            assert {i: stored.get(i) for i in ledger.acked} == ledger.acked
            refused = {name for batch in ledger.refused for name in batch}
            assert refused.isdisjoint(stored.values()), "a batch answered 503 was stored"
            assert len(stored) == len(ledger.acked)
            await audit(daemon, sim, ledger.acked)
            assert await daemon.close() == 0
        finally:
            await daemon.close()
