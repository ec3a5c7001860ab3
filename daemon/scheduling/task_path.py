"""The task path, built in one place: the board (the read model), its one writer (the tracker),
the status intake, reconciliation, the lifecycle clocks, flow control and the Mesos task calls.

``build_task_path`` wires them; ``TaskPath`` hands them to the core and the offer pipeline, and
answers the flow-control reads that span them (the launch budget and its bound).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scale_scheduler.daemon.mesos.driver import SchedulerDriver
from scale_scheduler.daemon.scheduling.flow_control import LaunchFlow
from scale_scheduler.daemon.scheduling.lifecycle_timers import LifecycleTimers
from scale_scheduler.daemon.scheduling.reconciliation import Reconciler
from scale_scheduler.daemon.scheduling.status_intake import StatusIntake
from scale_scheduler.daemon.scheduling.task_board import TaskBoard
from scale_scheduler.daemon.scheduling.task_calls import TaskCalls
from scale_scheduler.daemon.scheduling.task_commands import RetryPolicy, WorkingTask
from scale_scheduler.daemon.scheduling.task_tracker import TaskTracker
from scale_scheduler.daemon.service.config import SchedulerConfig
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import NodeRepository


@dataclass(frozen=True)
class TaskPath:
    board: TaskBoard
    tracker: TaskTracker
    intake: StatusIntake
    reconciler: Reconciler
    timers: LifecycleTimers
    flow: LaunchFlow
    calls: TaskCalls
    clock: Callable[[], float]

    def launch_budget(self) -> int | None:
        """How many tasks the next offer pass may launch (None: no limit)."""
        return self.flow.budget(self.board.in_flight, self.clock(), self.intake.backlog)

    def in_flight_bound(self) -> int:
        """The current bound on ``board.in_flight`` (``scheduler.max_in_flight``, adapted)."""
        return self.flow.bound(self.clock())


def build_task_path(
    config: SchedulerConfig,
    store: StateStore,
    driver: SchedulerDriver,
    nodes: NodeRepository,
    clock: Callable[[], float],
    on_work: Callable[[], None],
) -> TaskPath:
    """``on_work`` is called after tasks were queued or requeued (the core revives offers)."""
    board = TaskBoard()
    calls = TaskCalls(driver)
    flow = LaunchFlow(config.max_in_flight, clock())
    policy = RetryPolicy(config.max_cluster_failures, config.retry_backoff)

    async def commit_statuses(changed: Sequence[WorkingTask], now: float) -> None:
        # The intake resolves bursts and the tracker writes them; the tracker, through the
        # timers, feeds the intake: the one cycle, closed here once both exist.
        await tracker.commit_statuses(changed, now)

    intake = StatusIntake(board, policy, commit_statuses, calls, flow, clock)
    timers = LifecycleTimers(board, intake, calls, clock, on_work)
    tracker = TaskTracker(store, nodes, board, timers, flow, calls, clock, on_work)
    reconciler = Reconciler(config, board, calls, intake, clock)
    return TaskPath(board, tracker, intake, reconciler, timers, flow, calls, clock)
