"""The real daemon under concurrent clients (issue 14 items 2, 5 and 12): no acknowledged node
flag change is lost, every PATCH answer shows what its own write produced, and a read that
follows an acknowledged write sees it. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, task_body

from scale_scheduler.simulator import SimulatedCluster

ROUNDS = 8
"""Submit-read-cancel rounds per client (400 reads in all; the old store missed 2-49 per run)."""
FILLER = 600
"""Queued tasks the page readers list (one page each)."""


@pytest.fixture
async def daemon(tmp_path: Path, backend: PgDatabase | None) -> AsyncIterator[Daemon]:
    async with SimulatedCluster(agents=2, seed=14, **SIM) as sim:
        daemon = Daemon(tmp_path, sim.url, database=backend)
        try:
            await daemon.start()
            yield daemon
        finally:
            assert await daemon.close() == 0


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def _a_node(daemon: Daemon) -> int:
    """The id of a node the daemon has learned from the simulated agents."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not (listed := await daemon.get("/nodes/"))["results"]:
        assert loop.time() < deadline, "the daemon learned no node"
        await asyncio.sleep(0.05)  # poll interval
    return int(listed["results"][0]["id"])


async def test_concurrent_patches_of_one_node_keep_both_changes(daemon: Daemon) -> None:
    node = f"{daemon.url}/nodes/{await _a_node(daemon)}/"
    pause = {"is_paused": True, "pause_reason": "disk"}
    deactivate = {"is_active": False}
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
        for _ in range(10):
            reset = await _call(a, "PATCH", node, {"is_paused": False, "is_active": True})
            assert reset[0] == 200
            (paused, paused_body), (deactivated, deactivated_body) = await asyncio.gather(
                _call(a, "PATCH", node, pause), _call(b, "PATCH", node, deactivate)
            )
            assert (paused, deactivated) == (200, 200)
            # Each answer shows its own change (and maybe the other one, if it committed first).
            assert (paused_body["is_paused"], paused_body["pause_reason"]) == (True, "disk")
            assert deactivated_body["is_active"] is False
            final = (await _call(a, "GET", node))[1]
            assert (final["is_paused"], final["pause_reason"], final["is_active"]) == (
                True,
                "disk",
                False,
            )


async def test_each_concurrent_patch_answer_shows_its_own_write(daemon: Daemon) -> None:
    scheduler = f"{daemon.url}/scheduler/"
    node = f"{daemon.url}/nodes/{await _a_node(daemon)}/"
    wanted = [i % 2 == 0 for i in range(50)]
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            answers = await asyncio.gather(
                *(_call(session, "PATCH", scheduler, {"is_paused": v}) for v in wanted)
            )
            assert {status for status, _ in answers} == {201}
            assert [body["is_paused"] for _, body in answers] == wanted
            answers = await asyncio.gather(
                *(
                    _call(session, "PATCH", node, {"is_paused": v, "pause_reason": f"r{i}"})
                    for i, v in enumerate(wanted)
                )
            )
            assert {status for status, _ in answers} == {200}
            shown = [(body["is_paused"], body["pause_reason"]) for _, body in answers]
            assert shown == [(v, f"r{i}" if v else None) for i, v in enumerate(wanted)]


async def test_a_task_just_acknowledged_can_be_read_and_cancelled(daemon: Daemon) -> None:
    """25 clients each submit a task, read it and cancel it, while 8 clients page through
    ``/tasks/``. The scheduler is paused, so every task stays queued until its DELETE."""
    assert (await daemon.request("PATCH", "/scheduler/", {"is_paused": True}))[0] == 201
    await daemon.submit([task_body(f"filler-{i}") for i in range(FILLER)])
    stop = asyncio.Event()
    stale: list[str] = []

    async def page_through(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with session.get(f"{daemon.url}/tasks/?page_size=2000") as response:
                assert response.status == 200
                await response.read()

    async def submit_read_cancel(session: aiohttp.ClientSession, client: int) -> None:
        for round_ in range(ROUNDS):
            body = [task_body(f"c{client}-{round_}")]
            status, created = await _call(session, "POST", f"{daemon.url}/queue/", body)
            assert status == 201, created
            task = f"{daemon.url}/tasks/{created[0]['id']}/"
            status, view = await _call(session, "GET", task)
            if status != 200:
                stale.append(f"GET {task}: {status} {view}")
            status, view = await _call(session, "DELETE", task)
            if status != 200 or view["state"] != "CANCELED":
                stale.append(f"DELETE {task}: {status} {view}")

    async with aiohttp.ClientSession() as session:
        readers = [asyncio.create_task(page_through(session)) for _ in range(8)]
        try:
            await asyncio.gather(*(submit_read_cancel(session, c) for c in range(25)))
        finally:
            stop.set()
            await asyncio.gather(*readers)
    assert stale == [], (
        f"{len(stale)} of {2 * 25 * ROUNDS} reads missed an acknowledged write: {stale[:5]}"
    )
