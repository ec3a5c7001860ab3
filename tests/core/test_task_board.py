"""The task board, the read model the tracker writes: the queue in launch order (index first,
then the retry back-offs as they come due), the in-flight count, and per-task tables that give
their memory back once a peak has passed."""

from __future__ import annotations

import sys

from scale_scheduler.daemon.scheduling.task_board import SHRINK_SLACK_BYTES, TaskBoard
from scale_scheduler.state.domain import ShapeInterner, TaskState
from scale_scheduler.state.tasks import Task

SMALL = ShapeInterner().get(1, 128)


def queued(board: TaskBoard, task_id: int, priority: int = 100, due: float = 0.0) -> Task:
    task = Task(
        id=task_id,
        priority=priority,
        shape=SMALL,
        spec=b"{}",
        state=TaskState.QUEUED,
        max_attempts=1,
        next_attempt_at=due,
    )
    board.tasks[task_id] = task
    if due:
        board.retry_waits.add(task)
    else:
        board.index.add(task)
    board.queue_depth += 1
    return task


def test_queued_in_order_is_the_index_then_the_back_offs_by_due_time() -> None:
    board = TaskBoard()
    queued(board, 1, priority=100)
    queued(board, 2, due=50.0)
    queued(board, 3, priority=5)
    queued(board, 4, due=20.0)
    assert [task.id for task in board.queued_in_order()] == [3, 1, 4, 2]
    assert board.waiting_reason(board.tasks[1], scheduler_paused=True) == "the scheduler is paused"
    assert board.waiting_reason(board.tasks[4], False).startswith("retry back-off until ")


def test_in_flight_counts_launched_tasks_not_yet_confirmed() -> None:
    board = TaskBoard()
    board.launched_counts[TaskState.LAUNCHING] = 2
    board.launched_counts[TaskState.STAGING] = 3
    board.launched_counts[TaskState.STARTING] = 1
    board.launched_counts[TaskState.RUNNING] = 40
    assert board.in_flight == 6


def test_shrink_gives_back_a_peak_table_and_keeps_the_dict_the_index_shares() -> None:
    board = TaskBoard()
    tasks = board.tasks
    for task_id in range(1, 50_001):
        queued(board, task_id)
    peak = sys.getsizeof(tasks)
    assert peak > SHRINK_SLACK_BYTES
    for task_id in range(1, 49_991):
        del tasks[task_id]
    assert sys.getsizeof(tasks) == peak  # a dict never shrinks by itself
    board.shrink_tables()
    assert sys.getsizeof(tasks) < SHRINK_SLACK_BYTES
    assert board.tasks is tasks
    board.index.compact()
    assert [task.id for task in board.index.queued()] == list(range(49_991, 50_001))
