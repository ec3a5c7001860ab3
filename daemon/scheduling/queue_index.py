"""The queue index: queued tasks grouped by (priority, shape), each group in submission order.

The matcher never scans the queue. It walks priorities in ascending order and, inside one
priority, merges the groups by task id; a group whose shape fits no offer is skipped whole, so a
pass costs about (tasks placed + groups x agents), whatever the queue's length.

A group keeps task ids in an ``array('q')`` read from a head offset (ids only grow, so appends
keep it sorted; an array holds no object references, so the garbage collector never walks a
million entries) plus a small sorted list for tasks that come back out of order (retries,
reverted launches). Entries are removed lazily: the iterators skip tasks that are no longer
eligible, and ``compact`` drops the dead prefix after each pass. A task waiting out a retry
back-off (``next_attempt_at``) is held outside the index (``retry_waits``); an entry it left
behind from before its launch counts as dead until it is entered again. ``Task.indexed`` records
whether an entry exists, so a task is never entered twice.

Pure data structure: no I/O, no clock. The task tracker owns the instance and is the only writer.
"""

from __future__ import annotations

import bisect
import heapq
from array import array
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.tasks import Task

_QUEUED = TaskState.QUEUED
_GROWTH = 4
_LONGEST_RUN = 64


class QueueGroup:
    """Queued tasks of one priority and one shape; ``waiting`` is the last pass's verdict."""

    __slots__ = ("extra", "head", "key", "main", "priority", "shape", "waiting")

    def __init__(self, priority: int, shape: Shape) -> None:
        self.priority = priority
        self.shape = shape
        self.key = (priority, shape)
        self.main: array[int] = array("q")
        self.head = 0
        self.extra: list[int] = []
        self.waiting: Any = None

    def __len__(self) -> int:
        """Entries, dead ones included (an upper bound of the group's queued tasks)."""
        return len(self.main) - self.head + len(self.extra)

    def iter_main(self) -> Iterator[int]:
        main = self.main
        position, end = self.head, len(main)
        while position < end:
            yield main[position]
            position += 1

    def __repr__(self) -> str:
        return f"QueueGroup(priority={self.priority}, shape={self.shape.describe()!r})"


class QueueIndex:
    def __init__(self, tasks: Mapping[int, Task]) -> None:
        self._tasks = tasks
        self._groups: dict[tuple[int, Shape], QueueGroup] = {}
        self._levels: dict[int, list[QueueGroup]] = {}
        self._priorities: list[int] = []
        self.generation = 0
        """Counts entries added; a pass compares it to know the queue changed under it."""

    # -- writes ---------------------------------------------------------------------------------

    def add(self, task: Task) -> None:
        """Enter a queued task (new, retried or reverted); a no-op if it already has an entry."""
        if task.indexed:
            return
        key = (task.priority, task.shape)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = QueueGroup(task.priority, task.shape)
            level = self._levels.get(task.priority)
            if level is None:
                level = self._levels[task.priority] = []
                bisect.insort(self._priorities, task.priority)
            level.append(group)
        main = group.main
        if len(main) == group.head or main[-1] < task.id:
            main.append(task.id)
        else:
            bisect.insort(group.extra, task.id)
        task.indexed = True
        self.generation += 1

    def compact(self) -> None:
        """Drop entries of tasks no longer queued from the front of every group; forget empty
        groups. Tasks that are queued but busy keep their entry (their write may be reverted)."""
        tasks = self._tasks
        empty: list[QueueGroup] = []
        for group in self._groups.values():
            main, head, end = group.main, group.head, len(group.main)
            while head < end:
                task = tasks.get(main[head])
                if task is not None and task.state is _QUEUED and not task.next_attempt_at:
                    break
                head += 1
                if task is not None:
                    task.indexed = False
            if head == end:
                del main[:]
                head = 0
            elif head > 4096 and head > end // 2:
                del main[:head]
                head = 0
            group.head = head
            extra = group.extra
            if extra:
                kept = []
                for task_id in extra:
                    task = tasks.get(task_id)
                    if task is not None and task.state is _QUEUED and not task.next_attempt_at:
                        kept.append(task_id)
                    elif task is not None:
                        task.indexed = False
                group.extra = kept
            if not main and not group.extra:
                empty.append(group)
        for group in empty:
            self._drop(group)

    def _drop(self, group: QueueGroup) -> None:
        del self._groups[group.key]
        level = self._levels[group.priority]
        level.remove(group)
        if not level:
            del self._levels[group.priority]
            index = bisect.bisect_left(self._priorities, group.priority)
            del self._priorities[index]

    # -- reads ----------------------------------------------------------------------------------

    def levels(self) -> Iterator[list[QueueGroup]]:
        """Groups of each priority, lowest priority number first."""
        for priority in list(self._priorities):
            yield self._levels[priority]

    def groups(self) -> Iterator[QueueGroup]:
        for level in self.levels():
            yield from level

    def group_of(self, task: Task) -> QueueGroup | None:
        return self._groups.get((task.priority, task.shape))

    def eligible(self, group: QueueGroup) -> Iterator[int]:
        """Ids of the group's tasks the matcher may place now (queued, not busy), in id order."""
        for run in self.eligible_runs(group):
            yield from run

    def eligible_runs(self, group: QueueGroup) -> Iterator[list[int]]:
        """``eligible``'s ids in lists (never empty) of growing length: 1 id first, so a group
        that fits nowhere costs one id, then up to ``_LONGEST_RUN`` at a time, so a pass that
        places thousands of a group's tasks pulls them a list at a time, each id checked in one
        comprehension (B3's match) rather than resumed out of a generator one by one."""
        tasks = self._tasks.get
        size = 1
        if group.extra:
            ordered = self._ordered_ids(group)
            while True:
                chunk = list(islice(ordered, size))
                if not chunk:
                    return
                run = [
                    task_id
                    for task_id in chunk
                    if (task := tasks(task_id)) is not None
                    and task.state is _QUEUED
                    and not task.busy
                    and not task.next_attempt_at
                ]
                if run:
                    yield run
                size = min(size * _GROWTH, _LONGEST_RUN)
        main = group.main
        position, end = group.head, len(main)
        while position < end:
            run = [
                task_id
                for task_id in main[position : position + size]
                if (task := tasks(task_id)) is not None
                and task.state is _QUEUED
                and not task.busy
                and not task.next_attempt_at
            ]
            position += size
            if run:
                yield run
            size = min(size * _GROWTH, _LONGEST_RUN)

    def queued(self) -> Iterator[Task]:
        """Every queued task (busy ones included) in launch order: priority, then submission."""
        tasks = self._tasks
        for level in self.levels():
            iterators = [self._queued_in(group) for group in level]
            merged = iterators[0] if len(iterators) == 1 else heapq.merge(*iterators)
            for task_id in merged:
                task = tasks.get(task_id)
                if task is not None:
                    yield task

    def _queued_in(self, group: QueueGroup) -> Iterator[int]:
        tasks = self._tasks
        for task_id in self._ordered_ids(group):
            task = tasks.get(task_id)
            if task is not None and task.state is _QUEUED and not task.next_attempt_at:
                yield task_id

    @staticmethod
    def _ordered_ids(group: QueueGroup) -> Iterator[int]:
        if not group.extra:
            return group.iter_main()
        return heapq.merge(group.iter_main(), list(group.extra))

    def __len__(self) -> int:
        return len(self._groups)
