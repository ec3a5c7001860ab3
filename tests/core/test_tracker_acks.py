"""How the task tracker sends a burst's acknowledgements: every uuid once, a bounded number in
flight at once (not one task per acknowledgement), failures counted and reported."""

from __future__ import annotations

import asyncio

from corekit import CoreHarness, make_offer, status, wait_for
from structlog.testing import capture_logs

from scale_scheduler.daemon.scheduling.status_acks import ACK_WORKERS
from scale_scheduler.daemon.scheduling.status_intake import MAX_UPDATE_BACKLOG


async def launch(h: CoreHarness, count: int = 1) -> list[int]:
    ids = await h.submit(count)
    await h.offer_pass(make_offer(f"o-{ids[0]}", "a1", cpus=count * 4, mem=count * 4096))
    return ids


class CountingDriverAcks:
    """Wraps the fake driver's acknowledge: counts the acknowledgements in flight at once."""

    def __init__(self, harness: CoreHarness) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self._inner = harness.driver.acknowledge
        harness.driver.acknowledge = self  # type: ignore[method-assign]

    async def __call__(self, agent_id: str, task_id: str, uuid: str) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            await self._inner(agent_id, task_id, uuid)
        finally:
            self.in_flight -= 1


async def test_a_large_burst_is_acknowledged_a_bounded_number_at_a_time(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    ids = await launch(harness, 300)
    counting = CountingDriverAcks(harness)
    before = core.intake.acks.sent
    await harness.updates(*(status(f"{i}-1", "TASK_STARTING", uuid=f"u{i}") for i in ids))
    acked = [(c[2], c[3]) for c in harness.driver.of("ack")]
    assert sorted(acked) == sorted((f"{i}-1", f"u{i}") for i in ids)
    assert core.intake.acks.sent - before == 300
    assert 1 < counting.max_in_flight <= ACK_WORKERS


async def test_failed_acknowledgements_are_counted_and_reported(harness: CoreHarness) -> None:
    core = await harness.start()
    ids = await launch(harness, 5)
    harness.driver.fail.add("ack")
    with capture_logs() as logs:
        await harness.updates(*(status(f"{i}-1", "TASK_RUNNING") for i in ids))
    assert core.intake.acks.sent == 0
    (warning,) = [e for e in logs if e["event"] == "status_ack_failed"]
    assert (warning["count"], warning["total"]) == (5, 5)


async def test_a_full_backlog_holds_the_stream_until_half_of_it_is_handled(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    intake = core.intake
    assert core.backlog_room() is None
    # Terminal updates of tasks this daemon does not know: stored as nothing, acknowledged.
    for i in range(MAX_UPDATE_BACKLOG - 1):
        core.on_update(status(f"{i + 1_000_000}-1", "TASK_FINISHED", uuid=f"u{i}"))
    assert core.backlog_room() is None
    core.on_update(status("999-1", "TASK_FINISHED", uuid="last"))
    room = core.backlog_room()
    assert room is not None
    assert core.backlog_room() is room
    await asyncio.wait_for(room, timeout=60)
    assert intake.backlog <= MAX_UPDATE_BACKLOG // 2
    await wait_for(lambda: intake.backlog == 0, timeout=60)
    assert intake.acks.sent == MAX_UPDATE_BACKLOG
    assert core.backlog_room() is None
