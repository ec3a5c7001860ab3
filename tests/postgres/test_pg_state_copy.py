"""``scale-scheduler state copy --from sqlite:PATH --to postgresql://...``: every read of the
copy equals the source's, the identity sequences are past the copied ids, and a target that
already holds state is refused, unchanged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from daemon_process import SCRIPT
from pgserver import PgDatabase

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import Shape, ShapeInterner, TaskState, constraints_from
from scale_scheduler.state.interface import MaintainedState
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.tasks import Task, TaskSpec, spec_encoder

NOW = 1_700_000_000.0
NEXT_ID_SQL = "SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"


def task(task_id: int) -> Task:
    spec = spec_encoder.encode(TaskSpec(name=f"t{task_id}", command="true", env={"K": "v"}))
    shape = Shape(0.5, 64.0, 1.0, 0, 1, constraints_from({"rack": "r1"}))
    return Task(task_id, 5, shape, spec, TaskState.QUEUED, 3)


def burst(task_id: int, state: TaskState, mesos_state: str) -> c.StatusesApplied:
    change = c.StatusChange(task_id, state, 0, 0)
    change.started = state is TaskState.RUNNING
    change.status_state, change.status_message = mesos_state, "m"
    return c.StatusesApplied([change], NOW + 3)


WRITES: list[list[c.Change]] = [
    [c.SchedulerRowEnsured(NOW)],
    [c.TasksQueued([task(i) for i in range(1, 11)], [f"t{i}" for i in range(1, 11)], NOW)],
    [
        c.NodesSighted([c.NewNode(1, "h1", "a1", NOW), c.NewNode(2, "h2", "a2", NOW)], []),
        c.LaunchIntents([c.LaunchIntent(i, 1, "a1", "h1", [31000 + i]) for i in range(1, 6)], NOW),
    ],
    [burst(1, TaskState.RUNNING, "TASK_RUNNING")],
    [burst(2, TaskState.FINISHED, "TASK_FINISHED")],
    [burst(3, TaskState.FINISHED, "TASK_FINISHED")],
    [c.KillRequested(1, NOW + 4)],
    [c.TaskCanceled(10, NOW + 5)],
    [c.TasksPruned([c.PrunedTask(3, TaskState.FINISHED)])],
    [c.PauseSet(True, NOW + 6)],
    [c.NodeFlagsChanged(2, True, True, "disk", None, NOW + 7)],
    [c.FrameworkIdSaved("fw-copied", NOW + 8)],
]


async def reads(state: MaintainedState) -> dict[str, Any]:
    interner = ShapeInterner()
    live = [t for batch in [b async for b in state.live_tasks(interner)] for t in batch]
    return {
        "page": await state.task_page(None, 0, 100),
        "counts": {s: await state.count_tasks(s) for s in [None, *TaskState]},
        "live": live,
        "max_id": await state.max_task_id(),
        "nodes": await state.load_nodes(),
        "scheduler": await state.load_scheduler(),
        "framework": await state.load_framework_id(),
        "mark": await state.retention_mark(),
    }


def copy(source: Path, database: PgDatabase) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    return subprocess.run(
        [
            str(SCRIPT),
            "state",
            "copy",
            "--from",
            f"sqlite:{source}",
            "--to",
            database.dsn,
            "--password-file",
            str(database.password_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_state_copy_moves_every_record_and_the_framework_id(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    source_path = tmp_path / "state.db"
    source = await SqliteState.open(source_path)
    for write in WRITES:
        await source.commit(write)
    expected = await reads(source)
    await source.close()

    done = copy(source_path, pg_database)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("copied 9 tasks, 2 nodes, framework id fw-copied into ")
    assert pg_database.password not in done.stdout + done.stderr

    target = await PostgresState.open(pg_database.dsn, Password(pg_database.password))
    try:
        copied = await reads(target)
        for key, value in expected.items():
            assert copied[key] == value, key
        assert copied["framework"] == "fw-copied"
    finally:
        await target.close()
    connection = await pg_database.connect()
    try:
        next_task = await connection.fetchval(NEXT_ID_SQL.format(table="tasks"))
        next_node = await connection.fetchval(NEXT_ID_SQL.format(table="nodes"))
    finally:
        await connection.close()
    assert next_task == 11
    assert next_node == 3

    again = copy(source_path, pg_database)
    assert again.returncode == 3
    assert "already holds scheduler state" in again.stderr


def test_state_copy_names_a_wrong_source(tmp_path: Path, pg_database: PgDatabase) -> None:
    done = copy(tmp_path / "missing.db", pg_database)
    assert done.returncode == 3
    assert "missing.db: no such SQLite database" in done.stderr
    assert not (tmp_path / "missing.db").exists()
