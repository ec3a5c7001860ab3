"""``state copy`` of a live deployment: a daemon on SQLite runs tasks, stops (SIGTERM, no
TEARDOWN), its state is copied into PostgreSQL, and the daemon started on PostgreSQL resubscribes
as the same framework and keeps the running tasks: none is launched again, all finish."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from daemon_process import SCRIPT
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, audit, task_body

from scale_scheduler.simulator import SimulatedCluster

TASKS = 12


def copy(source: Path, database: PgDatabase) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    command = [str(SCRIPT), "state", "copy", "--from", f"sqlite:{source}", "--to", database.dsn]
    command += ["--password-file", str(database.password_file)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


async def test_a_copied_deployment_keeps_its_framework_and_running_tasks(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "postgresql").mkdir()
    async with SimulatedCluster(agents=2, seed=6, **{**SIM, "task_duration": 4.0}) as sim:
        before = Daemon(tmp_path / "sqlite", sim.url)
        after = Daemon(tmp_path / "postgresql", sim.url, database=pg_database)
        try:
            await before.start()
            ids = await before.submit([task_body(f"copy-{i}") for i in range(TASKS)])
            await sim.wait_until(
                lambda: sum(t.state == "TASK_RUNNING" for t in sim.tasks()) == TASKS, timeout=30
            )
            framework_id = await before.framework_id()
            assert await before.close() == 0

            done = await asyncio.to_thread(copy, before.db_path, pg_database)
            assert done.returncode == 0, done.stderr
            assert f"copied {TASKS} tasks" in done.stdout
            assert f"framework id {framework_id}" in done.stdout

            await after.start()
            assert await after.framework_id() == framework_id
            assert [f.id for f in sim.frameworks()] == [framework_id]
            assert sim.record.framework_infos[-1]["id"] == {"value": framework_id}
            states = await audit(after, sim, ids)  # each task ran once: none was relaunched
            assert set(states) == set(ids)
            assert await after.close() == 0
        finally:
            await before.close()
            await after.close()
