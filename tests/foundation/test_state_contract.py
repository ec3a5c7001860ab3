"""The state interface's contract, held by every backend: the same writes give the same reads
(SQLite in a temporary directory, and PostgreSQL in its own database, each beside the in-memory
state), a write naming a missing row fails whole, and writes are applied after they take effect,
in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pgserver import PgDatabase

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import Shape, ShapeInterner, TaskState, constraints_from
from scale_scheduler.state.interface import MaintainedState, MissingRowError
from scale_scheduler.state.memory import MemoryState
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.tasks import ATTEMPT_HISTORY, Task, TaskSpec, spec_encoder

NOW = 1_700_000_000.0


KINDS = ["sqlite", "memory", "postgresql"]
DURABLE = ["sqlite", "postgresql"]


async def open_backend(kind: str, tmp_path: Path, database: PgDatabase | None) -> MaintainedState:
    if kind == "sqlite":
        return await SqliteState.open(tmp_path / "state.db")
    if kind == "memory":
        return MemoryState()
    assert database is not None
    return await PostgresState.open(database.dsn, Password(database.password))


def database_for(kind: str, request: pytest.FixtureRequest) -> PgDatabase | None:
    """The test's own PostgreSQL database when ``kind`` needs one (only then is the server
    started: the other kinds run without it)."""
    return request.getfixturevalue("pg_database") if kind == "postgresql" else None


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> tuple[str, PgDatabase | None]:
    return request.param, database_for(request.param, request)


@pytest.fixture(params=DURABLE)
def durable_kind(request: pytest.FixtureRequest) -> tuple[str, PgDatabase | None]:
    return request.param, database_for(request.param, request)


@pytest.fixture
async def state(
    kind: tuple[str, PgDatabase | None], tmp_path: Path
) -> AsyncIterator[MaintainedState]:
    backend = await open_backend(kind[0], tmp_path, kind[1])
    yield backend
    await backend.close()


@pytest.fixture
async def backends(
    durable_kind: tuple[str, PgDatabase | None], tmp_path: Path
) -> AsyncIterator[list[MaintainedState]]:
    """A durable backend and the in-memory state, side by side."""
    durable = await open_backend(durable_kind[0], tmp_path, durable_kind[1])
    memory = MemoryState()
    yield [durable, memory]
    await durable.close()
    await memory.close()


def task(task_id: int, **kw: Any) -> Task:
    constraints = constraints_from([["rack", "IS", "r1"], ["hostname", "UNIQUE"]], "etl")
    shape = Shape(1.0, 128.0, 0.0, 0, 1, constraints, "etl")
    spec = TaskSpec(name=f"t{task_id}", command="true", env={"A": "1"})
    return Task(task_id, 100, shape, spec_encoder.encode(spec), TaskState.QUEUED, 3, **kw)


def burst(*items: tuple[int, TaskState, bool, str]) -> c.StatusesApplied:
    changes = []
    for task_id, state, requeue, mesos_state in items:
        change = c.StatusChange(task_id, state, 1 if requeue else 0, 0)
        change.requeue = requeue
        change.started = state is TaskState.RUNNING
        change.status_state, change.status_message = mesos_state, "m"
        change.status_reason, change.status_source = "REASON_X", "SOURCE_AGENT"
        changes.append(change)
    return c.StatusesApplied(changes, NOW + 3)


WRITES: list[list[c.Change]] = [
    [c.SchedulerRowEnsured(NOW)],
    [c.TasksQueued([task(i) for i in range(1, 8)], [f"t{i}" for i in range(1, 8)], NOW)],
    [
        c.NodesSighted([c.NewNode(1, "h1", "a1", NOW), c.NewNode(2, "h2", "a2", NOW)], []),
        c.LaunchIntents(
            [c.LaunchIntent(i, 1, "a1", "h1", [31000 + i]) for i in (1, 2, 3, 4, 5)], NOW + 1
        ),
        c.NodesOffered([(1, NOW + 1)]),
    ],
    [c.LaunchesReverted([c.RevertedLaunch(5, 1, 0, 0), c.RevertedLaunch(4, 9, 0, 0)], NOW + 2)],
    [
        burst(
            (1, TaskState.RUNNING, False, "TASK_RUNNING"),
            (2, TaskState.FINISHED, False, "TASK_FINISHED"),
            (3, TaskState.QUEUED, True, "TASK_LOST"),
        )
    ],
    [c.TaskCanceled(6, NOW + 4)],
    [c.KillRequested(1, NOW + 5)],
    [burst((1, TaskState.KILLED, False, "TASK_KILLED"))],
    [c.PauseSet(True, NOW + 6)],
    [c.NodeFlagsChanged(2, True, True, "disk", False, NOW + 7)],
    [c.NodesSighted([], [(2, "a2-new")])],
    [c.FrameworkIdSaved("fw-1", NOW + 8)],
    [c.TasksPruned([c.PrunedTask(2, TaskState.FINISHED), c.PrunedTask(6, TaskState.CANCELED)])],
]


async def reads(state: MaintainedState) -> dict[str, Any]:
    interner = ShapeInterner()
    live = [t for batch in [b async for b in state.live_tasks(interner, batch=2)] for t in batch]
    return {
        "page": await state.task_page(None, 0, 100),
        "queued_page": await state.task_page(TaskState.QUEUED, 1, 1, after=1),
        "by_ids": dict(await state.tasks_by_ids([1, 3, 99])),
        "recent": await state.recent_tasks(2),
        "counts": {s: await state.count_tasks(s) for s in [None, *TaskState]},
        "live": live,
        "max_id": await state.max_task_id(),
        "states": [await state.task_state(i) for i in range(1, 9)],
        "nodes": await state.load_nodes(),
        "scheduler": await state.load_scheduler(),
        "framework": await state.load_framework_id(),
        "mark": await state.retention_mark(),
        "terminal_total": await state.terminal_total(),
        "ends": [(e.task_id, e.state) for e in await state.task_ends(0, 100)],
    }


async def test_the_same_writes_give_the_same_reads(backends: list[MaintainedState]) -> None:
    for write in WRITES:
        for state in backends:
            await state.commit(write)
    durable, memory = [await reads(state) for state in backends]
    for key in durable:
        assert durable[key] == memory[key], key
    sqlite = durable
    # and what they read is what the writes said
    assert sqlite["states"] == [
        TaskState.KILLED,
        None,  # pruned
        TaskState.QUEUED,  # lost on launch: requeued
        TaskState.LAUNCHING,  # its revert named another attempt
        TaskState.QUEUED,  # reverted
        None,  # pruned
        TaskState.QUEUED,
        None,  # never created
    ]
    assert sqlite["counts"][TaskState.KILLED] == 1
    assert sqlite["counts"][TaskState.CANCELED] == 0
    assert sqlite["counts"][TaskState.FINISHED] == 0
    assert sqlite["counts"][None] == 5
    assert sqlite["mark"] == (6, 2)
    assert sqlite["max_id"] == 7
    assert [t.id for t in sqlite["live"]] == [3, 5, 7, 4]
    view = sqlite["by_ids"][1]
    assert (view.state, view.kill_requested, view.assigned_ports) == ("KILLED", True, [31001])
    assert view.last_status.state == "TASK_KILLED"
    assert sqlite["nodes"][1].is_paused
    assert sqlite["nodes"][1].agent_id == "a2-new"


async def test_a_change_naming_a_missing_row_fails_the_whole_write(state: MaintainedState) -> None:
    applied: list[str] = []
    with pytest.raises(MissingRowError):
        await state.commit([c.PauseSet(True, NOW)], lambda: applied.append("pause"))
    with pytest.raises(MissingRowError, match="Node 9"):
        await state.commit([c.NodeFlagsChanged(9, True, False, None, None, NOW)])
    assert applied == []
    assert await state.load_scheduler() is None


async def test_apply_runs_after_the_change_took_effect_and_its_result_is_returned(
    state: MaintainedState,
) -> None:
    seen: list[Any] = []

    async def queued() -> Any:
        return await state.commit(
            [c.TasksQueued([task(1)], ["t1"], NOW)], lambda: seen.append("applied") or "result"
        )

    assert await queued() == "result"
    assert seen == ["applied"]
    assert await state.task_state(1) is TaskState.QUEUED


async def test_the_attempt_history_reads_back_the_same_from_every_backend(
    backends: list[MaintainedState],
) -> None:
    """``ended_attempts`` (what the core rebuilds the hosts a retry avoids from at start-up)."""
    history = [
        c.EndedAttempt(1, n, f"a{n}", f"h{n}", NOW + n, NOW + n + 0.5, "FAILED", "R", "task")
        for n in range(1, ATTEMPT_HISTORY + 3)
    ]
    writes: list[list[c.Change]] = [[c.TasksQueued([task(1), task(2)], ["t1", "t2"], NOW)]]
    for ended in history:
        change = c.StatusChange(1, TaskState.QUEUED, ended.attempt, 0)
        change.requeue, change.ended_attempt = True, ended
        writes.append([c.StatusesApplied([change], ended.ended)])
    for write in writes:
        for state in backends:
            await state.commit(write)
    durable, memory = [await state.ended_attempts([2, 1, 99]) for state in backends]
    assert durable == memory == {1: history[-ATTEMPT_HISTORY:]}  # the last ones, oldest first
