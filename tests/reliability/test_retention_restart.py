"""Retention in the real daemon process: ``kill -9`` in the middle of pruning a large history,
then a restart that finds a consistent database and finishes the job."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from daemon_process import DaemonProcess, write_config
from ports import free_port

ROOT = Path(__file__).resolve().parents[2]
TASKS = 200_000
KEEP = 10_000


def generate(work: Path) -> Path:
    """``TASKS`` finished tasks written straight into a new database by the bench's generator."""
    subprocess.run(
        [
            *(sys.executable, "-m", "bench.history_at_size", "--generate-only"),
            *("--tasks", str(TASKS), "--live", "0", "--work", str(work)),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return work / "history.db"


def snapshot(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        finished, low, high = conn.execute(
            "SELECT COUNT(*), MIN(id), MAX(id) FROM tasks WHERE state = 'FINISHED'"
        ).fetchone()
        (counted,) = conn.execute("SELECT n FROM task_counts WHERE state = 'FINISHED'").fetchone()
        through, total = conn.execute(
            "SELECT pruned_through, pruned_total FROM retention"
        ).fetchone()
    finally:
        conn.close()
    return {
        "finished": finished,
        "counted": counted,
        "low": low,
        "high": high,
        "through": through,
        "total": total,
    }


async def pruned_so_far(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("scale_scheduler_tasks_pruned_total "):
                return float(line.split()[1])
    return 0.0


async def until_pruning_began(url: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if await pruned_so_far(session, url) > 0:
                return
            assert loop.time() < deadline, "no task was pruned"
            await asyncio.sleep(0.01)  # poll interval


@pytest.mark.timeout(240)
async def test_kill_9_mid_pruning_then_restart_is_consistent(tmp_path: Path) -> None:
    db = await asyncio.to_thread(generate, tmp_path)
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        mesos={"master": f"http://127.0.0.1:{free_port()}", "user": "svc", "hostname": "t"},
        api={"host": "127.0.0.1", "port": port},
        state={"path": str(db), "retention_max_tasks": KEEP, "retention_interval": 0.2},
    )
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        await daemon.wait_ready(timeout=30)
        await until_pruning_began(daemon.url)
        daemon.kill9()
    finally:
        daemon.stop_quietly()

    cut = await asyncio.to_thread(snapshot, db)
    assert KEEP < cut["finished"] < TASKS, "the kill did not land mid-pruning"
    assert cut["counted"] == cut["finished"]  # counts exact
    assert cut["total"] == TASKS - cut["finished"]  # every pruned row is accounted for
    assert cut["low"] == cut["through"] + 1  # the oldest went first, and the mark says which
    assert cut["high"] == TASKS

    daemon.start()
    try:
        await daemon.wait_ready(timeout=30)
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while True:
                async with session.get(daemon.url + "/tasks/?state=FINISHED&page_size=1") as r:
                    page = await r.json()
                if page["count"] == KEEP:
                    break
                assert loop.time() < deadline, f"pruning did not finish: {page['count']} left"
                await asyncio.sleep(0.05)  # poll interval
            assert page["results"][0]["id"] == TASKS - KEEP + 1
            async with session.get(daemon.url + "/tasks/1/") as response:
                assert response.status == 404
                assert "was removed by retention" in await response.text()
        assert daemon.terminate() == 0
    finally:
        daemon.stop_quietly()
    done = await asyncio.to_thread(snapshot, db)
    assert done == {
        "finished": KEEP,
        "counted": KEEP,
        "low": TASKS - KEEP + 1,
        "high": TASKS,
        "through": TASKS - KEEP,
        "total": TASKS - KEEP,
    }
