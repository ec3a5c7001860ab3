"""Tasks through FINISHED against the simulator, in-process, with a small launch bound: the
tasks in flight never exceed ``scheduler.max_in_flight``, and once every task has finished the
task board, the status intake, the node repository and the offer pipeline hold nothing per
task (structures and counts, not RSS, so the test cannot flake).

CI runs 3,000 tasks; ``SCALE_SCHEDULER_SOAK_TASKS=20000`` runs issue 19's 20,000 (about a
minute on a busy 2-core machine).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from daemonkit import running_daemon

from scale_scheduler.daemon.scheduling.ended_attempts import ENDED_MEMORY
from scale_scheduler.state.domain import TaskState

TASKS = int(os.environ.get("SCALE_SCHEDULER_SOAK_TASKS", "3000"))
BOUND = 150
AGENTS = 40  # 8 slots each: 320 slots, twice the bound, so the bound is what limits launches
BATCH = 1000


async def test_tasks_through_finished_within_the_bound_and_nothing_left_per_task(
    tmp_path: Path,
) -> None:
    async with running_daemon(
        tmp_path,
        agents=AGENTS,
        sim={"task_duration": 0.02, "task_start_delay": 0.01, "status_update_retry": 10.0},
        scheduler={"max_in_flight": BOUND, "idle_refuse_seconds": 0.2},
    ) as daemon:
        core = daemon.core
        board, intake = core.board, core.intake
        peak = 0
        waited = False
        reasons: set[str] = set()
        stop = asyncio.Event()

        async def watch() -> None:
            # Every loop turn: memory changes only inside callbacks, so no change goes unseen.
            nonlocal peak, waited
            while not stop.is_set():
                peak = max(peak, board.in_flight)
                if board.queue_depth:
                    waited = waited or core.task_path.launch_budget() == 0
                    head = next(board.index.queued(), None)
                    reason = board.waiting_reason(head, False) if head is not None else None
                    if reason is not None:
                        reasons.add(reason.split(":")[0])
                await asyncio.sleep(0)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            ids: list[int] = []
            for start in range(0, TASKS, BATCH):
                count = min(BATCH, TASKS - start)
                ids += await daemon.submit(
                    [
                        {"name": f"s{start + i}", "command": "true", "cpus": 0.5, "mem": 64}
                        for i in range(count)
                    ]
                )
            await daemon.until(
                lambda: (
                    board.ended_counts.get(TaskState.FINISHED, 0) >= TASKS
                    and intake.footprint()["acks_pending"] == 0
                ),
                timeout=max(60.0, TASKS / 100),
            )
        finally:
            stop.set()
            await watcher

        assert len(ids) == TASKS
        assert await daemon.count("FINISHED") == TASKS
        assert 0 < peak <= BOUND
        assert waited, "the bound never held a launch back"
        assert "launch flow control" in reasons, reasons
        assert daemon.sim.record.launched_more_than_once() == {}

        # Nothing per task is left: the board's and the status intake's structures are empty
        # (the ended-attempts window is the one cap), every node is back to zero, the pipeline
        # holds no plan.
        footprint = {**board.footprint(), **intake.footprint()}
        assert footprint.pop("ended") == min(TASKS, ENDED_MEMORY)
        assert footprint == dict.fromkeys(footprint, 0)
        assert board.in_flight == 0
        assert board.queue_depth == 0
        assert intake.backlog == 0
        assert all(count == 0 for count in board.launched_counts.values())
        assert len(core.nodes.by_id) == AGENTS
        for node in core.nodes.by_id.values():
            assert node.running_tasks == 0
            scheduled = node.scheduled
            assert (scheduled.cpus, scheduled.mem, scheduled.disk, scheduled.gpus) == (0, 0, 0, 0)
        pipeline = core.pipeline.footprint()
        assert pipeline["offers_in_pass"] == 0
        assert pipeline["interest_calls"] <= 1
        # Offers, not tasks: at most one per agent waits or was answered last.
        assert pipeline["pending_offers"] <= AGENTS
        assert pipeline["answered_offers"] <= AGENTS
