"""A PostgreSQL restart under load: the real daemon on ``state.backend: postgresql`` while four
clients submit batches and the simulator runs them; the server stops (fast: sessions ended,
open transactions rolled back) for a few seconds, then starts again.

Every batch answered 201 is stored under its ids; every batch answered 503 (``text/plain``, with
``Retry-After``) while the database was away is absent, whole. The lost session also ends the
daemon's term (it held the leadership lock): it either rides the outage out or stands down with
exit status 7, and is then started again as systemd's ``Restart=on-failure`` would. A batch whose
connection broke while the process exited got no answer either way and is not judged. The
clients carry on, and the audit holds: each task finished, launched exactly once."""

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
    unanswered: list[list[str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


async def client(index: int, daemon: Daemon, ledger: Ledger, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        batch = 0
        while not stop.is_set():
            batch += 1
            names = [f"c{index}-b{batch}-t{i}" for i in range(BATCH)]
            body = [task_body(name) for name in names]
            try:
                async with session.post(daemon.url + "/queue/", json=body) as response:
                    if response.status == 201:
                        for view in await response.json():
                            ledger.acked[view["id"]] = view["name"]
                    elif response.status == 503 and "Retry-After" in response.headers:
                        assert response.content_type == "text/plain"
                        ledger.refused.append(names)
                    else:
                        ledger.unexpected.append(f"{response.status}: {await response.text()}")
            except aiohttp.ClientConnectionError:
                ledger.unanswered.append(names)  # the process was exiting or restarting
            await asyncio.sleep(0.05)  # paced: the submitting spans the outage


async def leads_or_exits(daemon: Daemon, timeout: float = 30.0) -> None:
    """Until the daemon answers as the leader again, or its process has ended."""
    proc = daemon.process.proc
    assert proc is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while proc.poll() is None:
        try:
            _status, body = await daemon.request("GET", "/leader/")
        except aiohttp.ClientError:
            body = None
        if isinstance(body, dict) and body.get("this", {}).get("role") == "leader":
            return
        assert loop.time() < deadline, "neither leading again nor exited"
        await asyncio.sleep(0.1)  # poll interval: the answer comes from another process


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
            proc = daemon.process.proc
            assert proc is not None
            await leads_or_exits(daemon)
            if proc.poll() is not None:
                assert proc.returncode == 7, daemon.process.logs()  # deposed
                await daemon.start()
            await sim.wait_until(lambda: len(ledger.acked) >= acked_before_outage + 200, timeout=30)
            stop.set()
            await asyncio.gather(*runs)

            assert ledger.unexpected == []
            assert ledger.refused or ledger.unanswered, "no write met the outage"
            stored = dict(await daemon.db("SELECT id, name FROM tasks"))
            assert {i: stored.get(i) for i in ledger.acked} == ledger.acked
            refused = {name for batch in ledger.refused for name in batch}
            assert refused.isdisjoint(stored.values()), "a batch answered 503 was stored"
            unanswered = {name for batch in ledger.unanswered for name in batch}
            others = {i: n for i, n in stored.items() if i not in ledger.acked}
            assert set(others.values()) <= unanswered, "a task nobody was answered about exists"
            await audit(daemon, sim, {**ledger.acked, **others})
            assert await daemon.close() == 0
        finally:
            await daemon.close()
