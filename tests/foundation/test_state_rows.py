"""One row builder for every SQL backend (``state.rows``): each kind of row has a statement in
SQLite and in PostgreSQL that takes exactly the row's values, and both backends write the same
rows for the same changes (PostgreSQL's COPY of new tasks adds the state column)."""

from __future__ import annotations

import re

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.postgres import statements as pg
from scale_scheduler.state.rows import RowStatement, rows_of
from scale_scheduler.state.sqlite import backend as sqlite
from scale_scheduler.state.tasks import ATTEMPT_HISTORY, EndedAttempt, Task, TaskSpec, spec_encoder

NOW = 1_700_000_000.0


def _task(task_id: int) -> Task:
    spec = spec_encoder.encode(TaskSpec(name=f"t{task_id}", command="true"))
    return Task(task_id, 100, Shape(1.0, 64.0, 0.0, 0, 1, (), None), spec, TaskState.QUEUED, 3)


def _status(task_id: int, state: TaskState, requeue: bool, attempt: int) -> c.StatusChange:
    change = c.StatusChange(task_id, state, 1, 0)
    change.requeue = requeue
    change.status_state, change.status_reason = "TASK_FAILED", "REASON_COMMAND_EXECUTOR_FAILED"
    change.ended_attempt = EndedAttempt(
        task_id, attempt, "a1", "h1", NOW, NOW + 1, "FAILED", "REASON_X", "task"
    )
    return change


CHANGES: list[c.Change] = [
    c.SchedulerRowEnsured(NOW),
    c.TasksQueued([_task(1), _task(2)], ["t1", "t2"], NOW),
    c.NodesSighted([c.NewNode(1, "h1", "a1", NOW)], [(1, "a1-new")]),
    c.NodesOffered([(1, NOW)]),
    c.LaunchIntents([c.LaunchIntent(1, 1, "a1", "h1", [31000])], NOW),
    c.LaunchesReverted([c.RevertedLaunch(2, 1, 0, 0)], NOW),
    c.StatusesApplied(
        [
            _status(1, TaskState.QUEUED, True, ATTEMPT_HISTORY + 1),  # past the history: trimmed
            _status(2, TaskState.FAILED, False, 1),
        ],
        NOW,
    ),
    c.TaskCanceled(3, NOW),
    c.KillRequested(1, NOW),
    c.PauseSet(True, NOW),
    c.NodeFlagsChanged(1, True, True, "disk", None, NOW),
    c.FrameworkIdSaved("fw-1", NOW),
    c.TasksPruned([c.PrunedTask(2, TaskState.FAILED)]),
]


def _sqlite_parameters(sql: str) -> int:
    numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
    return max(numbered) if numbered else sql.count("?")


def _pg_parameters(sql: str) -> int:
    return max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)


def test_the_sample_covers_every_kind_of_row() -> None:
    assert {batch.statement for batch in rows_of(CHANGES)} == set(RowStatement)


def test_each_backend_has_a_statement_taking_exactly_each_row() -> None:
    for batch in rows_of(CHANGES):
        widths = {len(row) for row in batch.rows}
        assert widths == {_sqlite_parameters(sqlite.SQL[batch.statement])}, batch.statement
        if batch.statement is RowStatement.INSERT_TASK:
            assert widths == {len(pg.TASK_COPY_COLUMNS) - 1}  # + the state column
        else:
            assert widths == {_pg_parameters(pg.SQL[batch.statement])}, batch.statement


def test_both_backends_write_the_same_rows() -> None:
    lite = sqlite.statements_of(CHANGES)
    post = pg.statements_of(CHANGES)
    assert len(lite) == len(post) == len(rows_of(CHANGES))
    for a, b in zip(lite, post, strict=True):
        if b.copy_columns is not None:
            assert [(*row, TaskState.QUEUED.value) for row in a.rows] == list(b.rows)
        else:
            assert list(a.rows) == list(b.rows)
        assert (a.expect_rows, a.missing_message) == (b.expect_rows, b.missing_message)


def test_attempt_history_keeps_the_last_attempts_only_past_its_length() -> None:
    trims = [b for b in rows_of(CHANGES) if b.statement is RowStatement.TRIM_ATTEMPTS]
    assert [list(b.rows) for b in trims] == [[(1, 1)]]
