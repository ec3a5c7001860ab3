"""One subscriber's event stream: a buffer of RecordIO bytes, its writer loop and heartbeats.

Owns `Subscription`. The master appends events (never awaiting); `pump()` runs inside the
SUBSCRIBE request handler and, once woken, lets `COALESCE_SECONDS` pass before it writes
everything buffered as one chunk, so a burst of updates (one per acknowledgement that arrives
in that millisecond) costs one write, not one per loop iteration. Heartbeats come from a loop
timer, independent of the buffer, so a busy stream cannot starve them. Fault switches (hang,
no heartbeats, close, abort) live here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from scale_scheduler.simulator import protocol

COALESCE_SECONDS = 0.001
"""How long a woken stream gathers events before it writes them."""


class Subscription:
    """The open SUBSCRIBE stream of one framework on one master."""

    def __init__(self, framework_id: str, stream_id: str, heartbeat_interval: float) -> None:
        self.framework_id = framework_id
        self.stream_id = stream_id
        self.heartbeat_interval = heartbeat_interval
        self.closed = False
        self.aborted = False
        self.hung = False
        self.heartbeats = True
        self.events_sent = 0
        self.bytes_sent = 0
        self._buf: list[bytes] = []
        self._wake = asyncio.Event()
        self._hb: asyncio.TimerHandle | None = None

    def start_heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        self._hb = loop.call_later(self.heartbeat_interval, self._heartbeat)

    def _heartbeat(self) -> None:
        if self.closed:
            return
        if self.heartbeats and not self.hung:
            self.send_bytes(protocol.HEARTBEAT_RECORD)
        self._hb = asyncio.get_running_loop().call_later(self.heartbeat_interval, self._heartbeat)

    def send(self, event: dict[str, Any]) -> None:
        self.send_bytes(protocol.encode_event(event))

    def send_bytes(self, data: bytes) -> None:
        """Queue raw bytes (already RecordIO-framed, or deliberately not) for the client."""
        if self.closed:
            return
        self._buf.append(data)
        self._wake.set()

    def close(self, abort: bool = False) -> None:
        """End the stream: flush what is queued then finish, or with `abort` drop the socket."""
        if self._hb is not None:
            self._hb.cancel()
            self._hb = None
        self.closed = True
        self.aborted = self.aborted or abort
        self._wake.set()

    def set_hung(self, hung: bool) -> None:
        """A hung stream keeps the connection open but writes nothing, heartbeats included."""
        self.hung = hung
        self._wake.set()

    async def pump(self, resp: web.StreamResponse) -> None:
        """Write buffered bytes until the stream is closed; raises if the client went away."""
        while True:
            if self.closed and (self.aborted or self.hung or not self._buf):
                return
            if self._buf and not self.hung:
                if not self.closed:
                    await asyncio.sleep(COALESCE_SECONDS)
                    if self.aborted or self.hung:
                        continue
                data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
                self.events_sent += len(self._buf)
                self._buf.clear()
                self.bytes_sent += len(data)
                await resp.write(data)
                continue
            self._wake.clear()
            await self._wake.wait()
