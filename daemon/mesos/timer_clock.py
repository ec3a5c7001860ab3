"""The clock the Mesos connection's timeouts run on: the event loop's, or a test's.

``asyncio.AbstractEventLoop`` satisfies ``TimerClock``; a test passes a clock it advances
itself, so it can state "after the limit" without waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class TimerClock(Protocol):
    """The time, and a callback after a delay (``loop.time`` and ``loop.call_later``)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object], /) -> TimerHandle: ...
