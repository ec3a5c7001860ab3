"""The acknowledgement sender on its own: batches pipelined through ``acknowledge_many``, a
bounded number at once, burst callbacks, failures counted one by one, latency observed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from scale_scheduler.daemon.scheduling.status_acks import AckSender


class BatchDriver:
    """``acknowledge_many`` that records each batch and fails the task ids in ``fail``; each
    batch waits for ``release``."""

    def __init__(self, expect_batches: int = 0) -> None:
        self.batches: list[list[tuple[str, str, str]]] = []
        self.fail: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self.release.set()
        self.expect_batches = expect_batches
        self.all_arrived = asyncio.Event()

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[Exception | None]:
        self.batches.append(list(acks))
        if len(self.batches) == self.expect_batches:
            self.all_arrived.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.release.wait()
            await asyncio.sleep(0)  # answered on a later turn of the loop, as over a socket
        finally:
            self.in_flight -= 1
        return [RuntimeError("refused") if task in self.fail else None for _a, task, _u in acks]


async def submitted(sender: AckSender, acks: list[tuple[str, str, str, float]]) -> int:
    """Submit one burst; the count of its failures once it is over."""
    over: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    sender.submit(acks, over.set_result)
    return await over


async def test_a_burst_goes_out_in_bounded_batches_oldest_first() -> None:
    driver = BatchDriver()
    sender = AckSender(driver.acknowledge_many, lambda: 10.0, workers=4, batch=16)
    acks = [("a1", f"t{i}", f"u{i}", 9.5) for i in range(200)]
    assert await submitted(sender, acks) == 0
    assert sender.pending == 0
    assert all(len(batch) <= 16 for batch in driver.batches)
    assert len(driver.batches) < 200 / 4  # many acknowledgements per call to the driver
    assert driver.max_in_flight <= 4
    sent = [task for batch in driver.batches for _a, task, _u in batch]
    assert sent == [f"t{i}" for i in range(200)]  # oldest first, none twice
    assert sender.sent == 200
    assert sender.latency.count == 200
    assert sender.latency.sum == 200 * 0.5
    assert sender.take_worst() == 0.5
    assert sender.take_worst() == 0.0  # reset by reading


async def test_a_small_burst_is_spread_over_the_workers() -> None:
    driver = BatchDriver(expect_batches=4)
    driver.release.clear()
    sender = AckSender(driver.acknowledge_many, lambda: 0.0, workers=4, batch=64)
    over = asyncio.ensure_future(submitted(sender, [("a1", f"t{i}", "u", 0.0) for i in range(40)]))
    await driver.all_arrived.wait()
    assert sorted(len(b) for b in driver.batches) == [10, 10, 10, 10]
    assert sender.pending == 40
    driver.release.set()
    assert await over == 0
    assert sender.pending == 0


async def test_failures_are_counted_per_acknowledgement() -> None:
    driver = BatchDriver()
    driver.fail = {"t1", "t3"}
    sender = AckSender(driver.acknowledge_many, lambda: 0.0, workers=2, batch=8)
    assert await submitted(sender, [("a1", f"t{i}", "u", 0.0) for i in range(5)]) == 2
    assert (sender.sent, sender.failed, sender.latency.count) == (3, 2, 3)
