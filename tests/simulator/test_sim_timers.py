"""The simulator's timers: lanes per delay and the heap fire in due-time order.

They run on a clock the test advances (``clockkit.ManualClock``): due times are exact and
nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio

from clockkit import ManualClock

from scale_scheduler.simulator.timers import MAX_LANES, Timers


def test_lanes_and_heap_fire_in_due_order() -> None:
    clock = ManualClock()
    timers = Timers(clock)
    fired: list[str] = []
    now = timers.now()
    timers.after(0.04, fired.append, "after-0.04")
    timers.after(0.01, fired.append, "after-0.01")
    timers.at(now + 0.025, fired.append, "at-0.025")
    timers.after(0.01, fired.append, "after-0.01-second")
    timers.after(0.0, fired.append, "after-0")
    assert len(timers) == 5
    clock.advance(0.1)
    assert fired == ["after-0", "after-0.01", "after-0.01-second", "at-0.025", "after-0.04"]
    assert len(timers) == 0


def test_nothing_fires_before_its_time() -> None:
    clock = ManualClock()  # binary fractions below: due times compare exactly
    timers = Timers(clock)
    fired: list[str] = []
    timers.after(0.25, fired.append, "after-0.25")
    timers.at(timers.now() + 0.5, fired.append, "at-0.5")
    timers.after(0.75, fired.append, "after-0.75")
    clock.advance(0.125)
    assert fired == []
    clock.advance(0.125)
    assert fired == ["after-0.25"]
    clock.advance(0.4375)
    assert fired == ["after-0.25", "at-0.5"]
    assert len(timers) == 1
    clock.advance(0.0625)
    assert fired == ["after-0.25", "at-0.5", "after-0.75"]


def test_equal_delays_keep_insertion_order() -> None:
    clock = ManualClock()
    timers = Timers(clock)
    fired: list[int] = []
    for i in range(50):
        timers.after(0.0, fired.append, i)
    clock.advance(0.0)
    assert fired == list(range(50))


def test_delays_beyond_the_lanes_use_the_heap_in_order() -> None:
    clock = ManualClock()
    timers = Timers(clock)
    fired: list[float] = []
    delays = [0.001 * (i + 1) for i in range(MAX_LANES + 10)]
    for delay in reversed(delays):
        timers.after(delay, fired.append, delay)
    clock.advance(0.1)
    assert fired == delays


def test_callbacks_may_schedule_earlier_work_while_firing() -> None:
    clock = ManualClock()
    timers = Timers(clock)
    fired: list[str] = []

    def first() -> None:
        fired.append("first")
        timers.after(0.005, fired.append, "scheduled-by-first")

    timers.after(0.001, first)
    timers.after(0.05, fired.append, "late")
    clock.advance(0.1)
    assert fired == ["first", "scheduled-by-first", "late"]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    clock = ManualClock()
    timers = Timers(clock)
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.after(0.001, boom)
    timers.after(0.001, fired.append, "next")
    clock.advance(0.03)
    assert fired == ["next"]


def test_close_drops_everything() -> None:
    clock = ManualClock()
    timers = Timers(clock)
    fired: list[str] = []
    timers.after(0.001, fired.append, "x")
    timers.at(timers.now() + 0.001, fired.append, "y")
    timers.close()
    timers.after(0.001, fired.append, "z")
    clock.advance(0.02)
    assert fired == []
    assert len(timers) == 0
    assert clock.pending == 0


async def test_the_event_loop_is_the_default_clock() -> None:
    """The simulator passes its running loop: a timer fires on the loop's own clock."""
    loop = asyncio.get_running_loop()
    timers = Timers(loop)
    fired = asyncio.Event()
    timers.after(0.001, fired.set)
    await asyncio.wait_for(fired.wait(), timeout=10)
    assert len(timers) == 0
