"""Retries on a new host across a restart of the real daemon process (issue 17, item 3): the
hosts each waiting retry failed on are rebuilt from the stored attempt history when the daemon
loads its tasks, on SQLite and on PostgreSQL. (Where a retry then lands is the core's, tested
deterministically in ``tests/core/test_task_lifecycle.py``; here offers arrive as they do.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, task_body

from scale_scheduler.simulator import SimulatedCluster

TASKS = 4


async def failed_once(daemon: Daemon, ids: list[int], timeout: float = 30) -> list[dict[str, Any]]:
    """Until every task's first attempt has failed and it waits out its back-off."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        views = [await daemon.get(f"/tasks/{task_id}/") for task_id in ids]
        if all(v["state"] == "QUEUED" and len(v["attempt_history"]) == 1 for v in views):
            return views
        assert loop.time() < deadline, views
        await asyncio.sleep(0.05)  # poll interval of this wait on a condition


async def test_the_hosts_a_retry_avoids_are_rebuilt_after_kill_9(
    tmp_path: Path, backend: PgDatabase | None
) -> None:
    async with SimulatedCluster(agents=2, seed=3, **SIM) as sim:
        daemon = Daemon(tmp_path, sim.url, database=backend)
        try:
            await daemon.start()
            crashing = task_body(
                "crash",
                labels={"sim.outcome": "FAILED"},
                max_attempts=3,
                retry_backoff={"initial": 600},  # still waiting after the restart
            )
            ids = await daemon.submit([crashing] * TASKS)
            views = await failed_once(daemon, ids)
            assert all(v["attempt_history"][0]["hostname"] for v in views)
            await daemon.kill9()
            await daemon.start()
            loaded = daemon.events("tasks_loaded")[-1]
            assert loaded["retry_waiting"] == TASKS
            assert loaded["avoiding_hosts"] == TASKS  # was 0: memory only, lost on restart
        finally:
            await daemon.close()
