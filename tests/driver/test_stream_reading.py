"""How the native driver reads a burst of large records, and how its calls carry offer ids.

A burst of OFFERS events (85 KB each for 100 offers, B1 in ``bench/RESULTS.md``) is read without
pausing the socket: with aiohttp's default buffer (64 KiB, paused at twice that) reading was
paused and resumed every one or two events, each time a selector unregister, a register and an
extra turn of the loop. DECLINE and ACCEPT name their offers as ``{"value": id}`` messages.
"""

from __future__ import annotations

import aiohttp.client_proto
import pytest
from driver_fakes import (
    API_URL,
    FAST,
    CountingShare,
    FakeMaster,
    MemoryIdStore,
    RecordingHandler,
    driver_config,
    eventually,
    record,
)

from scale_scheduler.daemon.mesos.driver import ConnectionState, Launch
from scale_scheduler.daemon.mesos.master_detector import StaticMasterDetector
from scale_scheduler.daemon.mesos.native_driver import create_native_driver

RECORD_BYTES = 85_000
RECORDS = 16


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per time aiohttp paused reading a response (the driver's event stream)."""
    seen: list[int] = []
    original = aiohttp.client_proto.ResponseHandler.pause_reading

    def counting(self: aiohttp.client_proto.ResponseHandler) -> None:
        seen.append(1)
        original(self)

    monkeypatch.setattr(aiohttp.client_proto.ResponseHandler, "pause_reading", counting)
    return seen


async def test_a_burst_of_large_records_is_read_without_pausing_the_socket(
    master: FakeMaster, pauses: list[int]
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
    await driver.start(RecordingHandler())
    try:
        await master.subscribed.wait()
        padding = "x" * (RECORD_BYTES - 40)
        heartbeat = record({"type": "HEARTBEAT", "padding": padding})
        before = share.records
        # One write of 1.4 MB: the stream holds many records at once, as under an offer flood.
        await master.push_raw(heartbeat * RECORDS)
        await eventually(lambda: share.records >= before + RECORDS)
        assert pauses == []
    finally:
        await driver.stop()


async def test_calls_name_their_offers_as_offer_id_messages(master: FakeMaster) -> None:
    driver = create_native_driver(
        driver_config(),
        None,
        MemoryIdStore(),
        api_url=API_URL,
        detector=StaticMasterDetector([master.url]),
        settings=FAST,
    )
    await driver.start(RecordingHandler())
    try:
        await master.subscribed.wait()
        await eventually(lambda: driver.status.state is ConnectionState.SUBSCRIBED)
        await driver.decline(["o1", 'o"2'], 5.0)
        await driver.accept(Launch(["o3"], []), None)
        (decline,) = master.calls_of("DECLINE")
        assert decline["decline"] == {
            "offer_ids": [{"value": "o1"}, {"value": 'o"2'}],
            "filters": {"refuse_seconds": 5.0},
        }
        (accept,) = master.calls_of("ACCEPT")
        assert accept["accept"]["offer_ids"] == [{"value": "o3"}]
        assert accept["accept"]["operations"] == [{"type": "LAUNCH", "launch": {"task_infos": []}}]
    finally:
        await driver.stop()
