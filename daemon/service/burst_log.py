"""One log line per burst of like events, not one per event.

Some events come in floods an outsider can cause (connections refused over the cap, accept
errors when the process runs out of file descriptors): each would otherwise write a line, and a
flood would fill the disk. ``BurstLog`` writes the first event, then at most one line every
``interval`` seconds while events keep coming, each with how many were not logged since the
line before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class BurstLog:
    def __init__(
        self,
        log: Any,
        event: str,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._event = event
        self._interval = interval
        self._clock = clock
        self._last_logged: float | None = None
        self._suppressed = 0

    def note(self, **fields: Any) -> None:
        now = self._clock()
        if self._last_logged is not None and now - self._last_logged < self._interval:
            self._suppressed += 1
            return
        self._log.warning(self._event, not_logged_since_last=self._suppressed, **fields)
        self._last_logged = now
        self._suppressed = 0
