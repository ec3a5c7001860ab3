"""The stream reader's share of the loop: one turn after a record, up to ``EXTRA_TURNS`` more
while API requests keep coming; and the native driver takes its turns through it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from driver_fakes import (
    API_URL,
    FAST,
    CountingShare,
    FakeMaster,
    MemoryIdStore,
    RecordingHandler,
    driver_config,
    eventually,
)

from scale_scheduler.daemon.mesos.loop_share import EXTRA_TURNS, LoopShare
from scale_scheduler.daemon.mesos.master_detector import StaticMasterDetector
from scale_scheduler.daemon.mesos.native_driver import create_native_driver


async def turns_taken(step: Callable[[], Awaitable[None]], on_turn: Callable[[], None]) -> int:
    """How many turns of the loop ``step()`` took; ``on_turn`` runs on each (the API's work)."""
    loop = asyncio.get_running_loop()
    turns = 0
    running = True

    def tick() -> None:
        nonlocal turns
        if running:
            turns += 1
            on_turn()
            loop.call_soon(tick)

    loop.call_soon(tick)
    await step()
    running = False
    return turns


async def test_an_idle_api_costs_the_reader_one_turn() -> None:
    share = LoopShare()
    assert await turns_taken(share.after_record, lambda: None) == 1


async def test_a_busy_api_gets_more_turns() -> None:
    assert EXTRA_TURNS >= 1
    share = LoopShare()
    # A request is served on every turn of the loop.
    assert await turns_taken(share.after_record, share.note_request) == 1 + EXTRA_TURNS


async def test_extra_turns_stop_when_requests_stop() -> None:
    share = LoopShare()
    share.note_request()  # served before the record; none after
    assert await turns_taken(share.after_record, lambda: None) == 2
    assert await turns_taken(share.after_record, lambda: None) == 1


async def test_no_extra_turns_when_turned_off() -> None:
    share = LoopShare(extra_turns=0)
    share.note_request()
    assert await turns_taken(share.after_record, share.note_request) == 1


async def test_the_native_driver_takes_a_turn_through_the_share_after_each_record(
    master: FakeMaster,
) -> None:
    share = CountingShare()
    driver = create_native_driver(
        driver_config(),
        None,
        MemoryIdStore(),
        api_url=API_URL,
        detector=StaticMasterDetector([master.url]),
        settings=FAST,
        loop_share=share,
    )
    handler = RecordingHandler()
    await driver.start(handler)
    try:
        await master.subscribed.wait()
        before = share.records
        for _ in range(5):
            await master.push({"type": "HEARTBEAT"})
        # (the fake master also sends heartbeats of its own: at least five more)
        await eventually(lambda: share.records >= before + 5)
    finally:
        await driver.stop()
