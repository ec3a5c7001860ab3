"""The single ``scheduler`` row: global pause flag, in memory and on disk.

Memory is the source for reads on hot paths (offer handling, ``/status/``); every change is
committed first and applied to memory in the same step (``StateStore.commit``'s ``apply``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from scale_scheduler.state.changes import PauseSet, SchedulerRowEnsured
from scale_scheduler.state.interface import MissingRowError, StateStore

log = structlog.get_logger(__name__)

MISSING_MESSAGE = (
    "The scheduler's database entry is missing (table scheduler, id 1). "
    "It is recreated when the daemon next starts."
)


class SchedulerRowMissingError(MissingRowError):
    """The scheduler row was deleted while the daemon runs."""


@dataclass
class SchedulerState:
    """In-memory copy of the scheduler row."""

    is_paused: bool = False
    last_modified: float = 0.0


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    """The scheduler row as one write left it (what that write's PATCH answer shows), and
    whether that write changed the flag."""

    is_paused: bool
    last_modified: float
    changed: bool


class SchedulerRepository:
    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self.state = SchedulerState()

    async def ensure_and_load(self) -> SchedulerState:
        """Create the row if missing (start-up only), then load it into memory."""
        await self._store.commit([SchedulerRowEnsured(self._clock())])
        row = await self._store.load_scheduler()
        if row is None:  # pragma: no cover - the insert above guarantees it
            raise SchedulerRowMissingError(MISSING_MESSAGE)
        self.state.is_paused = row.is_paused
        self.state.last_modified = row.last_modified
        return self.state

    async def check_row(self) -> None:
        """Raise ``SchedulerRowMissingError`` if the row has been deleted by hand."""
        if await self._store.load_scheduler() is None:
            raise SchedulerRowMissingError(MISSING_MESSAGE)

    async def set_paused(self, is_paused: bool) -> SchedulerSnapshot:
        """Set the global pause flag; returns the state this write produced (``self.state`` may
        already hold a later write's by the time the caller runs)."""
        now = self._clock()
        state = self.state

        def apply() -> SchedulerSnapshot:
            changed = state.is_paused != is_paused
            state.is_paused = is_paused
            state.last_modified = now
            if changed:
                log.info("scheduler_pause_changed", is_paused=is_paused)
            return SchedulerSnapshot(is_paused, now, changed)

        try:
            result = await self._store.commit([PauseSet(is_paused, now)], apply)
        except MissingRowError as exc:
            raise SchedulerRowMissingError(str(exc)) from None
        assert result is not None
        return result
