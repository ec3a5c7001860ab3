"""The simulator's timers: lanes per delay and the heap fire in due-time order."""

from __future__ import annotations

import asyncio

from scale_scheduler.simulator.timers import MAX_LANES, Timers


async def test_lanes_and_heap_fire_in_due_order() -> None:
    timers = Timers(asyncio.get_running_loop())
    fired: list[str] = []
    now = timers.now()
    timers.after(0.04, fired.append, "after-0.04")
    timers.after(0.01, fired.append, "after-0.01")
    timers.at(now + 0.025, fired.append, "at-0.025")
    timers.after(0.01, fired.append, "after-0.01-second")
    timers.after(0.0, fired.append, "after-0")
    assert len(timers) == 5
    await asyncio.sleep(0.1)
    assert fired == ["after-0", "after-0.01", "after-0.01-second", "at-0.025", "after-0.04"]
    assert len(timers) == 0


async def test_equal_delays_keep_insertion_order() -> None:
    timers = Timers(asyncio.get_running_loop())
    fired: list[int] = []
    for i in range(50):
        timers.after(0.0, fired.append, i)
    await asyncio.sleep(0.02)
    assert fired == list(range(50))


async def test_delays_beyond_the_lanes_use_the_heap_in_order() -> None:
    timers = Timers(asyncio.get_running_loop())
    fired: list[float] = []
    delays = [0.001 * (i + 1) for i in range(MAX_LANES + 10)]
    for delay in reversed(delays):
        timers.after(delay, fired.append, delay)
    await asyncio.sleep(0.1)
    assert fired == delays


async def test_callbacks_may_schedule_earlier_work_while_firing() -> None:
    timers = Timers(asyncio.get_running_loop())
    fired: list[str] = []

    def first() -> None:
        fired.append("first")
        timers.after(0.005, fired.append, "scheduled-by-first")

    timers.after(0.001, first)
    timers.after(0.05, fired.append, "late")
    await asyncio.sleep(0.1)
    assert fired == ["first", "scheduled-by-first", "late"]


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    timers = Timers(asyncio.get_running_loop())
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.after(0.001, boom)
    timers.after(0.001, fired.append, "next")
    await asyncio.sleep(0.03)
    assert fired == ["next"]


async def test_close_drops_everything() -> None:
    timers = Timers(asyncio.get_running_loop())
    fired: list[str] = []
    timers.after(0.001, fired.append, "x")
    timers.at(timers.now() + 0.001, fired.append, "y")
    timers.close()
    timers.after(0.001, fired.append, "z")
    await asyncio.sleep(0.02)
    assert fired == []
    assert len(timers) == 0
