"""How many free pages a pruning pass keeps in the database file for the writes to come.

At steady state the writes between two passes (new tasks, their updates) take about as many pages
as the next pass frees. Handing all of those back (``incremental_vacuum``) and letting the writes
grow the file again moves pages into the holes and writes them twice: in a steady-state loop
(5,000 tasks inserted, finished and pruned per pass, 40,000 kept) it took the WAL written per pass
from 993 to 1,254 frames. So a pass keeps as many free pages as the writes took between two
passes (the most over the last ``window`` passes, for bursts) and gives back only what lies
beyond. After a large prune, or when the writes slow down, the excess
still goes back to the file system.
"""

from __future__ import annotations

from collections import deque

from scale_scheduler.state.interface import PageUsage

WINDOW = 10
"""Passes whose page demand the margin covers."""


class ReuseMargin:
    """Feed it the page usage at the start and at the end of every pass; ``keep`` is the margin.

    The first pass (after a start) has nothing to go by and keeps none: everything free goes back.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._ended_in_use: int | None = None
        self._demand: deque[int] = deque(maxlen=window)

    def pass_started(self, usage: PageUsage) -> None:
        """The writes since the last pass took ``usage.in_use`` minus what was in use then."""
        if self._ended_in_use is not None:
            self._demand.append(max(0, usage.in_use - self._ended_in_use))

    def pass_ended(self, usage: PageUsage) -> None:
        self._ended_in_use = usage.in_use

    @property
    def keep(self) -> int:
        return max(self._demand, default=0)
