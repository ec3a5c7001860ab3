"""The queue index: launch order, lazy removal, compaction, re-entry of retried tasks."""

from __future__ import annotations

from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import Shape, ShapeInterner, TaskState
from scale_scheduler.state.tasks import Task

interner = ShapeInterner()
SMALL = interner.get(1, 128)
BIG = interner.get(4, 1024)


def make(tasks: dict[int, Task], task_id: int, shape: Shape = SMALL, priority: int = 100) -> Task:
    task = Task(
        id=task_id,
        priority=priority,
        shape=shape,
        spec=b"{}",
        state=TaskState.QUEUED,
        max_attempts=1,
    )
    tasks[task_id] = task
    return task


def test_launch_order_is_priority_then_submission_across_shapes() -> None:
    tasks: dict[int, Task] = {}
    index = QueueIndex(tasks)
    for task_id, shape, priority in [(1, SMALL, 100), (2, BIG, 100), (3, SMALL, 5), (4, BIG, 100)]:
        index.add(make(tasks, task_id, shape, priority))
    assert [t.id for t in index.queued()] == [3, 1, 2, 4]
    assert [g.priority for g in index.groups()] == [5, 100, 100]


def test_add_is_idempotent_and_out_of_order_ids_keep_order() -> None:
    tasks: dict[int, Task] = {}
    index = QueueIndex(tasks)
    for task_id in (5, 6, 7):
        index.add(make(tasks, task_id))
    index.add(tasks[6])
    late = make(tasks, 2)
    index.add(late)  # a retried task with an older id goes before the newer ones
    assert [t.id for t in index.queued()] == [2, 5, 6, 7]
    (group,) = index.groups()
    assert list(index.eligible(group)) == [2, 5, 6, 7]


def test_eligible_skips_busy_and_launched_and_compact_drops_dead_prefix() -> None:
    tasks: dict[int, Task] = {}
    index = QueueIndex(tasks)
    for task_id in range(1, 6):
        index.add(make(tasks, task_id))
    tasks[1].state = TaskState.LAUNCHING
    tasks[2].busy = True
    del tasks[3]  # cancelled and forgotten
    (group,) = index.groups()
    assert list(index.eligible(group)) == [4, 5]
    assert [t.id for t in index.queued()] == [2, 4, 5]  # busy tasks are still queued
    index.compact()
    assert len(group) == 4  # 1 dropped; 2 (busy) stops the prefix; 3 is skipped lazily
    assert tasks[1].indexed is False
    tasks[2].busy = False
    assert list(index.eligible(group)) == [2, 4, 5]


def test_requeued_task_reenters_once() -> None:
    tasks: dict[int, Task] = {}
    index = QueueIndex(tasks)
    task = make(tasks, 1)
    index.add(task)
    task.state = TaskState.LAUNCHING
    index.compact()
    assert len(index) == 0
    assert not task.indexed
    task.state = TaskState.QUEUED
    index.add(task)
    index.add(task)
    assert [t.id for t in index.queued()] == [1]


def test_large_prefix_is_reclaimed() -> None:
    tasks: dict[int, Task] = {}
    index = QueueIndex(tasks)
    for task_id in range(1, 20_001):
        index.add(make(tasks, task_id))
    for task_id in range(1, 15_001):
        tasks[task_id].state = TaskState.LAUNCHING
    index.compact()
    (group,) = index.groups()
    assert group.head == 0
    assert len(group.main) == 5_000
    assert next(index.eligible(group)) == 15_001


def test_eligible_runs_start_with_one_id_and_never_yield_an_empty_list() -> None:
    # The matcher gives up a group that fits nowhere after its first id, and pulls the ids of a
    # group it places as lists: the first list holds one id, none is empty, together they are
    # eligible()'s ids in order, dead and busy entries skipped (here a whole list's worth).
    tasks: dict[int, Task] = {}
    index = QueueIndex(tasks)
    for task_id in range(1, 301):
        index.add(make(tasks, task_id))
    for task_id in range(2, 30):
        tasks[task_id].busy = True
    index.add(make(tasks, 0))  # out of order: read through the merged path
    (group,) = index.groups()
    runs = list(index.eligible_runs(group))
    assert runs[0] == [0]
    assert all(runs)
    expected = [0, 1, *range(30, 301)]
    assert [task_id for run in runs for task_id in run] == expected == list(index.eligible(group))
    tasks[0].state = TaskState.LAUNCHING
    index.compact()
    runs = list(index.eligible_runs(group))
    assert runs[0] == [1]
    assert all(runs)
    assert [task_id for run in runs for task_id in run] == expected[1:]
