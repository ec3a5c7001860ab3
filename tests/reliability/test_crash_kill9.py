"""Crash: ``kill -9`` of the real daemon (on SQLite, and on PostgreSQL) while 8 clients submit
10,000 tasks in batches and toggle the global and two node pause flags, with the simulator
launching; then a restart.

After the restart: every batch answered 201 is in the database under its returned ids, names
intact; a batch cut off by the kill is there whole or not at all; nothing else exists; no task
was launched twice; the framework id is unchanged; each pause flag holds its last acknowledged
value (or the value of the one PATCH the kill cut off). Then the clients finish, the flags are
cleared, and the run drains: every task ends FINISHED, having run on an agent exactly once.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, audit, launches, task_body

from scale_scheduler.simulator import AgentSpec, SimulatedCluster

CLIENTS = 8
TOTAL = 10_000
KILL_AFTER_ACKED = 4_000
PACE = (0.05, 0.25)  # seconds a client waits between batches: submitting lasts a few seconds
NODE_TOGGLERS = {1: "sim-agent-0", 2: "sim-agent-1"}  # client index -> the node it pauses
GLOBAL_TOGGLER = 0


@dataclass
class Flag:
    """One pause flag with a single writer, so its last acknowledged value is well defined."""

    acked: bool = False
    cut_off: bool | None = None  # the value of a PATCH the kill interrupted (it may have landed)
    changes: int = 0

    def allowed(self) -> set[bool]:
        return {self.acked} if self.cut_off is None else {self.acked, self.cut_off}


@dataclass
class Ledger:
    acked: dict[int, str] = field(default_factory=dict)  # id -> name, from 201 answers
    cut_off: list[list[str]] = field(default_factory=list)  # batches the kill left unanswered
    unexpected: list[str] = field(default_factory=list)
    flags: dict[str, Flag] = field(default_factory=dict)


def plan_batches(rng: random.Random) -> list[list[list[str]]]:
    """Per client, its batches of task names (1 to 100 tasks each; 10,000 names in all)."""
    per_client = TOTAL // CLIENTS
    plans = []
    for client in range(CLIENTS):
        names = [f"c{client}-t{i}" for i in range(per_client)]
        batches = []
        while names:
            size = rng.randint(1, 100)
            batches.append(names[:size])
            names = names[size:]
        plans.append(batches)
    return plans


class Client:
    def __init__(self, index: int, daemon: Daemon, ledger: Ledger, up: asyncio.Event) -> None:
        self.index = index
        self.daemon = daemon
        self.ledger = ledger
        self.up = up
        self.node_id: int | None = None

    async def run(self, batches: list[list[str]]) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            done = asyncio.Event()
            toggling = asyncio.create_task(self.toggle_until(session, done))
            rng = random.Random(100 + self.index)
            try:
                for names in batches:
                    await self.up.wait()
                    await self.submit(session, names)
                    await asyncio.sleep(rng.uniform(*PACE))  # a paced client, on purpose
            finally:
                done.set()
                await toggling

    async def toggle_until(self, session: aiohttp.ClientSession, done: asyncio.Event) -> None:
        """The flag's single writer: flip it every few milliseconds while the batches go in."""
        if self.index != GLOBAL_TOGGLER and self.index not in NODE_TOGGLERS:
            return
        rng = random.Random(self.index)
        while not done.is_set():
            await self.up.wait()
            if self.index == GLOBAL_TOGGLER:
                await self.toggle(session, "global", "/scheduler/")
            else:
                await self.toggle_node(session)
            await asyncio.sleep(rng.uniform(0.005, 0.03))  # flips paced on purpose

    async def submit(self, session: aiohttp.ClientSession, names: list[str]) -> None:
        body = [task_body(name) for name in names]
        try:
            async with session.post(self.daemon.url + "/queue/", json=body) as response:
                status = response.status
                views = await response.json() if status == 201 else await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.ledger.cut_off.append(names)
            return
        if status != 201:
            self.ledger.unexpected.append(f"POST /queue/ answered {status}: {views}")
            return
        assert [v["name"] for v in views] == names
        for view in views:
            assert view["id"] not in self.ledger.acked, f"id {view['id']} returned twice"
            self.ledger.acked[view["id"]] = view["name"]

    async def toggle_node(self, session: aiohttp.ClientSession) -> None:
        hostname = NODE_TOGGLERS[self.index]
        if self.node_id is None:
            try:
                async with session.get(f"{self.daemon.url}/nodes/?hostname={hostname}") as r:
                    results = (await r.json())["results"] if r.status == 200 else []
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return
            if not results:
                return  # no offer from that agent yet
            self.node_id = results[0]["id"]
        await self.toggle(session, hostname, f"/nodes/{self.node_id}/")

    async def toggle(self, session: aiohttp.ClientSession, key: str, path: str) -> None:
        flag = self.ledger.flags.setdefault(key, Flag())
        value = not flag.acked
        body: dict[str, object] = {"is_paused": value}
        if key != "global":
            body["pause_reason"] = f"toggle {flag.changes}" if value else None
        try:
            async with session.patch(self.daemon.url + path, json=body) as response:
                status = response.status
                answer = await response.json()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            flag.cut_off = value
            return
        if status not in (200, 201):
            self.ledger.unexpected.append(f"PATCH {path} answered {status}: {answer}")
            return
        assert answer["is_paused"] is value
        flag.acked, flag.cut_off = value, None
        flag.changes += 1


async def flag_values(daemon: Daemon, node_ids: dict[str, int]) -> dict[str, bool]:
    values = {"global": (await daemon.get("/scheduler/"))["is_paused"]}
    for hostname, node_id in node_ids.items():
        values[hostname] = (await daemon.get(f"/nodes/{node_id}/"))["is_paused"]
    return values


UNDERWAY = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")


@pytest.mark.slow
async def test_kill_9_under_load_loses_no_acknowledged_write(
    tmp_path: Path, backend: PgDatabase | None
) -> None:
    rng = random.Random(9)
    agent = AgentSpec(cpus=4, mem=8192)  # 8 tasks per agent: 160 at a time
    async with SimulatedCluster(agents=20, agent=agent, seed=9, **SIM) as sim:
        daemon = Daemon(tmp_path, sim.url, database=backend)
        try:
            await daemon.start()
            framework_id = await daemon.framework_id()
            assert framework_id is not None
            ledger = Ledger()
            up = asyncio.Event()
            up.set()
            clients = [Client(i, daemon, ledger, up) for i in range(CLIENTS)]
            plans = plan_batches(rng)
            runs = [asyncio.create_task(c.run(p)) for c, p in zip(clients, plans, strict=True)]

            # Kill in the thick of it: requests in flight, launches under way, flags changing.
            # Tasks not yet ended on an agent are live in the database too (their end has not
            # been sent): the kill surely hits launched work, even when a pause toggle has just
            # stopped new launches.
            await sim.wait_until(
                lambda: (
                    len(ledger.acked) >= KILL_AFTER_ACKED
                    and launches(sim) >= 200
                    and any(t.state in UNDERWAY for t in sim.tasks())
                ),
                timeout=60,
                interval=0.005,
            )
            up.clear()  # no new requests; those in flight are cut off by the kill
            await daemon.kill9()
            acked_before = dict(ledger.acked)
            reconciles = sim.record.calls["RECONCILE"]
            await daemon.start()  # as systemd would

            # The kill hit launches in flight with work still queued, and the restart reconciled.
            loaded = daemon.events("tasks_loaded")[-1]
            assert loaded["live"] > loaded["queued"] > 0, loaded
            assert sim.record.calls["RECONCILE"] > reconciles
            # Same framework: resubscribed with the stored id, never a second registration.
            assert await daemon.framework_id() == framework_id
            assert [f.id for f in sim.frameworks()] == [framework_id]
            assert sim.record.framework_infos[-1]["id"] == {"value": framework_id}
            # Pause flags: the last acknowledged value (or that of the PATCH the kill cut off).
            nodes = {NODE_TOGGLERS[c.index]: c.node_id for c in clients if c.node_id is not None}
            assert set(nodes) == set(NODE_TOGGLERS.values())
            assert all(ledger.flags[key].changes > 3 for key in ("global", *nodes))
            values = await flag_values(daemon, nodes)
            for key, value in values.items():
                assert value in ledger.flags[key].allowed(), (key, value, ledger.flags[key])
            # Every acknowledged task under its returned id; nothing else but whole cut-off
            # batches; no name twice.
            stored = dict(await daemon.db("SELECT id, name FROM tasks"))
            assert {i: stored.get(i) for i in acked_before} == acked_before
            names = set(stored.values())
            assert len(names) == len(stored), "a task was stored twice"
            cut_names = {n for batch in ledger.cut_off for n in batch}
            assert names - set(acked_before.values()) <= cut_names, "tasks nobody submitted"
            for batch in ledger.cut_off:
                present = {n in names for n in batch}
                assert len(present) == 1, "a batch was stored in part"
            assert set(acked_before) <= set(await daemon.api_task_states())
            assert sim.record.launched_more_than_once() == {}

            up.set()
            await asyncio.gather(*runs)
            assert ledger.unexpected == []
            assert len(ledger.acked) + sum(len(b) for b in ledger.cut_off) == TOTAL
            await daemon.request("PATCH", "/scheduler/", {"is_paused": False})
            for node_id in nodes.values():
                await daemon.request("PATCH", f"/nodes/{node_id}/", {"is_paused": False})
            await audit(daemon, sim, ledger.acked)
            assert await daemon.close() == 0
        finally:
            await daemon.close()
