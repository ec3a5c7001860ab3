"""A submitted batch leaves the event loop free while it is prepared, and batches that overlap
still commit in id order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from corekit import CoreHarness, new_task

from scale_scheduler.daemon.scheduling.task_tracker import SUBMIT_CHUNK
from scale_scheduler.state.changes import Change, TasksQueued


async def test_other_work_runs_while_a_batch_is_prepared(harness: CoreHarness) -> None:
    # Prepared in one go, a batch of 10,000 held the loop (no update handled, no offer
    # answered) for as long as it took; here the loop runs other work between chunks.
    core = await harness.start()
    ticks = 0
    at_commit: list[int] = []

    async def other_work() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    def before_commit(changes: Sequence[Change]) -> None:
        if any(isinstance(change, TasksQueued) for change in changes):
            at_commit.append(ticks)

    harness.state.before_commit = before_commit
    probe = asyncio.get_running_loop().create_task(other_work())
    try:
        await asyncio.sleep(0)
        started = ticks
        views = await core.tracker.submit([new_task(f"t{i}") for i in range(4 * SUBMIT_CHUNK)])
    finally:
        probe.cancel()
    assert at_commit[0] - started >= 3  # at least once between each two of the four chunks
    assert [view.id for view in views] == list(range(views[0].id, views[0].id + 4 * SUBMIT_CHUNK))
    assert core.board.queue_depth == 4 * SUBMIT_CHUNK


async def test_overlapping_batches_commit_in_id_order(harness: CoreHarness) -> None:
    core = await harness.start()
    first_ids: list[int] = []

    def before_commit(changes: Sequence[Change]) -> None:
        first_ids.extend(c.tasks[0].id for c in changes if isinstance(c, TasksQueued))

    harness.state.before_commit = before_commit
    batches = [[new_task(f"{b}-{i}") for i in range(3 * SUBMIT_CHUNK)] for b in "abc"]
    answers = await asyncio.gather(*(core.tracker.submit(batch) for batch in batches))
    assert first_ids == sorted(first_ids)
    launch_order = [task.id for task in core.board.index.queued()]
    assert launch_order == sorted(launch_order)
    assert sorted(view.id for views in answers for view in views) == launch_order
