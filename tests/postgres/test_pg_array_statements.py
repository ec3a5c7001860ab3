"""Launch intents and status updates are written as one UPDATE over arrays of their columns
(``state/postgres/statements.py``); a batch in which a task appears twice (two writes committed
in one group) falls back to one execution per row, so the later write wins as it does on SQLite
and a start time once written is kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pgserver import PgDatabase

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.postgres.statements import statements_of
from scale_scheduler.state.tasks import Task, TaskSpec, spec_encoder

NOW = 1_700_000_000.0
COLUMNS = "state, attempts, agent_id, hostname, assigned_ports, launched, started, status_state"


def task(task_id: int) -> Task:
    spec = spec_encoder.encode(TaskSpec(name=f"t{task_id}", command="true"))
    return Task(task_id, 1, Shape(0.5, 64.0, 0.0, 0, 0, ()), spec, TaskState.QUEUED, 3)


def status(task_id: int, state: TaskState, *, started: bool = False) -> c.StatusChange:
    change = c.StatusChange(task_id, state, 0, 0)
    change.started = started
    change.status_state = f"TASK_{state.value}"
    change.status_time = NOW
    return change


@pytest.fixture
async def state(pg_database: PgDatabase) -> AsyncIterator[PostgresState]:
    state = await PostgresState.open(pg_database.dsn, Password(pg_database.password))
    await state.commit([c.SchedulerRowEnsured(NOW)])
    ids = [1, 2, 3]
    await state.commit([c.TasksQueued([task(i) for i in ids], [f"t{i}" for i in ids], NOW)])
    yield state
    await state.close()


async def rows(database: PgDatabase) -> dict[int, tuple[Any, ...]]:
    connection = await database.connect()
    try:
        found = await connection.fetch(f"SELECT id, {COLUMNS} FROM tasks ORDER BY id")
        return {row["id"]: tuple(row)[1:] for row in found}
    finally:
        await connection.close()


def test_intents_and_updates_carry_their_array_statement() -> None:
    intents = c.LaunchIntents([c.LaunchIntent(1, 1, "a1", "h1", (31000,))], NOW)
    updates = c.StatusesApplied([status(1, TaskState.RUNNING, started=True)], NOW)
    (intent,), (update,) = statements_of([intents]), statements_of([updates])
    assert "unnest" in (intent.array_sql or "")
    assert "unnest" in (update.array_sql or "")


async def test_a_batch_of_intents_and_updates_lands_row_by_row(
    state: PostgresState, pg_database: PgDatabase
) -> None:
    intents = [c.LaunchIntent(i, 1, f"agent-{i}", f"host-{i}", (31000 + i,)) for i in (1, 2, 3)]
    await state.commit([c.LaunchIntents(intents, NOW + 1)])
    stored = await rows(pg_database)
    assert stored == {
        i: ("LAUNCHING", 1, f"agent-{i}", f"host-{i}", f"[{31000 + i}]", NOW + 1, None, None)
        for i in (1, 2, 3)
    }
    await state.commit(
        [
            c.StatusesApplied(
                [status(1, TaskState.RUNNING, started=True), status(2, TaskState.STARTING)],
                NOW + 2,
            )
        ]
    )
    stored = await rows(pg_database)
    assert (stored[1][0], stored[1][6]) == ("RUNNING", NOW + 2)
    assert (stored[2][0], stored[2][6]) == ("STARTING", None)
    assert stored[3][0] == "LAUNCHING"


async def test_a_task_twice_in_one_group_keeps_the_later_write_and_its_start(
    state: PostgresState, pg_database: PgDatabase
) -> None:
    intents = [c.LaunchIntent(i, 1, f"agent-{i}", f"host-{i}", ()) for i in (1, 2)]
    await state.commit([c.LaunchIntents(intents, NOW + 1)])
    # Committed at once, the three writes share one transaction: task 1 appears twice in the
    # merged batch of status rows.
    await asyncio.gather(
        state.commit([c.StatusesApplied([status(1, TaskState.RUNNING, started=True)], NOW + 2)]),
        state.commit([c.StatusesApplied([status(2, TaskState.RUNNING, started=True)], NOW + 3)]),
        state.commit([c.StatusesApplied([status(1, TaskState.FINISHED)], NOW + 4)]),
    )
    stored = await rows(pg_database)
    assert stored[1][0] == "FINISHED"
    assert stored[1][6] == NOW + 2  # the start time written by the earlier update is kept
    assert stored[1][7] == "TASK_FINISHED"
    assert (stored[2][0], stored[2][6]) == ("RUNNING", NOW + 3)
