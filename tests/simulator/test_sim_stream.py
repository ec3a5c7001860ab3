"""A subscriber's stream writes what arrives within a millisecond of waking as one chunk."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web
from daemonkit import eventually

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.stream import Subscription


class _Response:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


async def test_events_of_consecutive_loop_iterations_share_one_write() -> None:
    sub = Subscription("fw", "stream", heartbeat_interval=60)
    resp = _Response()
    pump = asyncio.create_task(sub.pump(cast(web.StreamResponse, resp)))
    first: dict[str, Any] = protocol.error_event("one")
    second: dict[str, Any] = protocol.error_event("two")
    sub.send(first)
    await asyncio.sleep(0)  # the pump woke and waits for the rest of the burst
    sub.send(second)
    await eventually(lambda: resp.writes)
    assert resp.writes == [protocol.encode_event(first) + protocol.encode_event(second)]
    sub.send(first)
    await eventually(lambda: len(resp.writes) >= 2)
    assert len(resp.writes) == 2
    sub.close()
    await asyncio.wait_for(pump, 1)


async def test_an_aborted_stream_writes_nothing_more() -> None:
    sub = Subscription("fw", "stream", heartbeat_interval=60)
    resp = _Response()
    pump = asyncio.create_task(sub.pump(cast(web.StreamResponse, resp)))
    sub.send(protocol.error_event("lost"))
    await asyncio.sleep(0)  # the pump woke and waits for the rest of the burst
    sub.close(abort=True)
    await asyncio.wait_for(pump, 1)
    assert resp.writes == []
