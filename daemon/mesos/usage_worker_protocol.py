"""What the daemon and its usage worker process say to each other over the worker's stdin and
stdout: length-prefixed MessagePack frames (a 4-byte big-endian length, then the frame).

The daemon sends ``WorkerSettings`` once, then one ``FetchRequest`` per agent to ask; the worker
answers each with a ``FetchReply`` carrying the agent's ``ContainerReading``s or the reason it
has none. The HTTP Basic authorization travels in the requests (never on the command line or in
the environment, where other users of the host could read it).
"""

from __future__ import annotations

import asyncio
import struct

import msgspec

from scale_scheduler.daemon.mesos.usage_math import ContainerReading

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
"""No frame is larger (an agent's answer is capped at 32 MiB of JSON, far more than its
readings take in MessagePack)."""


class WorkerSettings(msgspec.Struct, frozen=True):
    timeout: float
    """Seconds an agent has to answer."""
    concurrency: int
    """Most agents asked at once (the daemon's ``usage.concurrency``)."""


class FetchRequest(msgspec.Struct, frozen=True, array_like=True):
    id: int
    endpoint: str
    authorization: str | None


class FetchReply(msgspec.Struct, frozen=True, array_like=True, gc=False):
    id: int
    readings: list[ContainerReading] | None = None
    error: str | None = None
    """Why there are no readings (the agent's fault, never a credential)."""
    garbage: bool = False
    """The agent answered 200 with something that is not what the call returns."""


_encoder = msgspec.msgpack.Encoder()


def frame(message: msgspec.Struct) -> bytes:
    body = _encoder.encode(message)
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's body; None at the end of the stream (the other side closed it)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ValueError("the stream ended inside a frame's length") from None
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over the limit of {MAX_FRAME}")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ValueError("the stream ended inside a frame") from None


settings_decoder = msgspec.msgpack.Decoder(WorkerSettings)
request_decoder = msgspec.msgpack.Decoder(FetchRequest)
reply_decoder = msgspec.msgpack.Decoder(FetchReply)
