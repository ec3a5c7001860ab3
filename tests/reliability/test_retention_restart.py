"""Retention in the real daemon process: ``kill -9`` in the middle of pruning a large history,
then a restart that finds a consistent database and finishes the job. On SQLite, and on
PostgreSQL (the same history moved there with ``state copy``)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_process import SCRIPT, DaemonProcess, write_config
from pgserver import PgDatabase
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


def copy_to_postgresql(db: Path, database: PgDatabase) -> None:
    """The history moved into ``database`` by ``scale-scheduler state copy``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    command = [str(SCRIPT), "state", "copy", "--from", f"sqlite:{db}", "--to", database.dsn]
    command += ["--password-file", str(database.password_file)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr


SNAPSHOT = (
    "SELECT COUNT(*), MIN(id), MAX(id) FROM tasks WHERE state = 'FINISHED'",
    "SELECT n FROM task_counts WHERE state = 'FINISHED'",
    "SELECT pruned_through, pruned_total FROM retention",
)


async def snapshot(db: Path, database: PgDatabase | None) -> dict[str, int]:
    rows: list[Any]
    if database is None:
        conn = sqlite3.connect(db)
        try:
            rows = [conn.execute(sql).fetchone() for sql in SNAPSHOT]
        finally:
            conn.close()
    else:
        connection = await database.connect()
        try:
            rows = [await connection.fetchrow(sql) for sql in SNAPSHOT]
        finally:
            await connection.close()
    (finished, low, high), (counted,), (through, total) = rows
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


@pytest.mark.timeout(300)
async def test_kill_9_mid_pruning_then_restart_is_consistent(
    tmp_path: Path, backend: PgDatabase | None
) -> None:
    db = await asyncio.to_thread(generate, tmp_path)
    state: dict[str, Any] = {"path": str(db)}
    if backend is not None:
        await asyncio.to_thread(copy_to_postgresql, db, backend)
        state = {
            "backend": "postgresql",
            "dsn": backend.dsn,
            "password_file": str(backend.password_file),
        }
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        mesos={"master": f"http://127.0.0.1:{free_port()}", "user": "svc", "hostname": "t"},
        api={"host": "127.0.0.1", "port": port},
        state={**state, "retention_max_tasks": KEEP, "retention_interval": 0.2},
    )
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        await daemon.wait_ready(timeout=30)
        await until_pruning_began(daemon.url)
        daemon.kill9()
    finally:
        daemon.stop_quietly()

    cut = await snapshot(db, backend)
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
    done = await snapshot(db, backend)
    assert done == {
        "finished": KEEP,
        "counted": KEEP,
        "low": TASKS - KEEP + 1,
        "high": TASKS,
        "through": TASKS - KEEP,
        "total": TASKS - KEEP,
    }
