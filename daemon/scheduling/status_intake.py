"""Status updates from Mesos: queued by the driver callback, handled in bursts, acknowledged
after their commit, with back-pressure on the event stream.

Each burst (at most ``MAX_BURST`` updates) is resolved against memory by the pure
``task_commands.resolve_burst`` against the board, committed and applied by the tracker in one
write (``commit``), then its
KILLs are sent and its acknowledgements (only updates that carry a uuid) handed to
``status_acks.AckSender``, which sends them in the background while the next burst is handled.
When ``MAX_UPDATE_BACKLOG`` updates wait unacknowledged, the driver stops reading the event
stream (``backlog_room``), so TCP holds the rest at the master and memory stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.scheduling.flow_control import LaunchFlow
from scale_scheduler.daemon.scheduling.status_acks import AckSender
from scale_scheduler.daemon.scheduling.task_board import TaskBoard
from scale_scheduler.daemon.scheduling.task_calls import TaskCalls
from scale_scheduler.daemon.scheduling.task_commands import RetryPolicy, WorkingTask, resolve_burst

log = structlog.get_logger(__name__)

MAX_BURST = 4096
"""Most updates resolved and committed together: a burst's commit and acknowledgements stay
short, so an update waits for at most one such burst before its own is handled."""
MAX_UPDATE_BACKLOG = 20_000
"""Updates received but not yet acknowledged at which the driver stops reading the event
stream (``backlog_room``); it reads again once the backlog is down to half."""

CommitStatuses = Callable[[Sequence[WorkingTask], float], Awaitable[None]]
"""The tracker's write of a burst's resolved changes (commit, then apply to the board)."""


class StatusIntake:
    def __init__(
        self,
        board: TaskBoard,
        policy: RetryPolicy,
        commit: CommitStatuses,
        calls: TaskCalls,
        flow: LaunchFlow,
        clock: Callable[[], float],
    ) -> None:
        self._board = board
        self._policy = policy
        self._commit = commit
        self._calls = calls
        self._flow = flow
        self._clock = clock
        self._updates: list[TaskStatus] = []
        self._arrivals: list[float] = []
        """When each of ``_updates`` arrived (for the acknowledgement latency)."""
        self._updates_ready = asyncio.Event()
        self._room: asyncio.Future[None] | None = None
        """Set while the driver waits for the update backlog to shrink."""
        self.acks = AckSender(calls.acknowledge_many, clock)
        self.lock = asyncio.Lock()
        """Bursts are resolved against memory and applied after their commit: one at a time."""
        self.heard: set[int] | None = None
        """While a reconciliation round runs: the tasks that got any status (its set)."""
        self.updates_handled = 0
        self.stale_updates = 0
        """Non-terminal updates about attempts that had ended for good (not answered by KILL)."""
        self.room_listeners: list[Callable[[], None]] = []
        """Called after a burst of updates was handled (launch budget may have come back)."""

    def on_update(self, status: TaskStatus) -> None:
        """Driver callback: queue the update; ``run`` handles bursts."""
        self._updates.append(status)
        self._arrivals.append(self._clock())
        self._updates_ready.set()

    async def run(self) -> None:
        """Handle queued updates forever, one burst (one commit) at a time."""
        while True:
            await self._updates_ready.wait()
            self._updates_ready.clear()
            await self.process_pending()

    async def process_pending(self) -> None:
        async with self.lock:
            await self.drain()

    async def drain(self) -> None:
        """Handle every queued update (hold ``lock``)."""
        while self._updates:
            if len(self._updates) <= MAX_BURST:
                burst, self._updates = self._updates, []
                arrivals, self._arrivals = self._arrivals, []
            else:
                burst, arrivals = self._updates[:MAX_BURST], self._arrivals[:MAX_BURST]
                del self._updates[:MAX_BURST], self._arrivals[:MAX_BURST]
            try:
                await self.process_updates(burst, arrivals, counted=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("status_burst_failed", size=len(burst))
                self._handled(len(burst))

    def _handled(self, count: int) -> None:
        """A burst is stored and acknowledged (or failed): counted, and room for more."""
        self.updates_handled += count
        self._flow.handled(self._clock(), self.acks.take_worst())
        self._check_room()
        for listener in list(self.room_listeners):
            listener()

    async def process_updates(
        self,
        burst: Sequence[TaskStatus],
        arrivals: Sequence[float] | None = None,
        *,
        counted: bool = False,
    ) -> None:
        """Resolve one burst, commit it, send its KILLs, then hand its acknowledgements to the
        sender (the next burst does not wait for them). ``counted``: updates from Mesos (not
        the daemon's own verdicts), counted as handled once their acknowledgements are
        answered."""
        now = self._clock()
        board = self._board
        acks: list[tuple[str, str, str, float]] = []
        if arrivals is None:
            arrivals = [now] * len(burst)
        for status, arrived in zip(burst, arrivals, strict=True):
            if status.uuid and status.agent_id is not None and status.agent_id.value:
                acks.append((status.agent_id.value, status.task_id.value, status.uuid, arrived))
        resolution = resolve_burst(burst, board.tasks, board.ended, self._policy, now)
        if self.heard is not None:
            self.heard.update(resolution.working)
        for status in resolution.stale:
            # A resend, reordered update or late reconciliation answer: the uuid (if any) is
            # acknowledged and nothing is killed.
            self.stale_updates += 1
            log.debug(
                "stale_update_ignored", mesos_task_id=status.task_id.value, state=status.state
            )
        for status in resolution.strays:
            log.warning(
                "unknown_task_killed",
                mesos_task_id=status.task_id.value,
                state=status.state,
                agent_id=status.agent_id.value if status.agent_id is not None else None,
            )
        if resolution.changed:
            await self._commit(resolution.changed, now)
        if resolution.kills:
            await self._calls.kill(resolution.kills)
        if counted:
            size = len(burst)
            self.acks.submit(acks, lambda _failed: self._handled(size))
        else:
            self.acks.submit(acks, lambda _failed: None)

    # -- back-pressure --------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Updates received and not yet acknowledged (queued, being stored, acks pending)."""
        return len(self._updates) + self.acks.pending

    def backlog_room(self) -> asyncio.Future[None] | None:
        """None while the driver may read more events; else a future done once the backlog
        is down to half of ``MAX_UPDATE_BACKLOG`` (the driver stops reading until then)."""
        if self.backlog < MAX_UPDATE_BACKLOG:
            return None
        if self._room is None or self._room.done():
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def _check_room(self) -> None:
        room = self._room
        if room is not None and self.backlog <= MAX_UPDATE_BACKLOG // 2:
            self._room = None
            if not room.done():
                room.set_result(None)

    def footprint(self) -> dict[str, int]:
        return {
            "heard": len(self.heard) if self.heard is not None else 0,
            "updates": len(self._updates),
            "arrivals": len(self._arrivals),
            "acks_pending": self.acks.pending,
        }
