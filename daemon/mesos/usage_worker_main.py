"""The usage worker: a child process of the daemon that asks the agents for their usage.

``python -m scale_scheduler.daemon.mesos.usage_worker_main`` reads ``WorkerSettings`` and then
``FetchRequest``s on stdin, asks each agent with ``AgentUsageClient`` (at most ``concurrency``
at once) and writes a ``FetchReply`` per request on stdout, in the order the agents answer. It
keeps nothing between requests but the client's memory of agents without the v1 API. It exits
when stdin ends: the daemon closed it, or died.

Why a process: a round over thousands of agents is thousands of connections, each a connect,
a send, a few reads and a close. On the daemon's one event loop that work took about half a
second per 2,000 agents away from offers and API requests (``bench``, B7); here it runs on
another core, and the daemon's loop only reads the replies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from scale_scheduler.daemon.mesos.agent_usage_api import (
    AgentGarbageError,
    AgentUsageClient,
    AgentUsageError,
)
from scale_scheduler.daemon.mesos.usage_worker_protocol import (
    FetchReply,
    FetchRequest,
    frame,
    read_frame,
    request_decoder,
    settings_decoder,
)


class _Worker:
    def __init__(self, writer: asyncio.StreamWriter, timeout: float, concurrency: int) -> None:
        self._writer = writer
        self._slots = asyncio.Semaphore(concurrency)
        self._authorization: str | None = None
        self._session = aiohttp.ClientSession(
            # For agents without the v1 API (/monitor/statistics): connections closed after
            # each answer, as GET_CONTAINERS' (kept-alive ones would hold a socket per agent
            # between rounds).
            connector=aiohttp.TCPConnector(limit=concurrency, force_close=True)
        )
        self.client = AgentUsageClient(lambda: self._session, lambda: self._authorization, timeout)
        self._tasks: set[asyncio.Task[None]] = set()

    def take(self, request: FetchRequest) -> None:
        # The latest credentials the daemon holds (they change only when its secret does).
        self._authorization = request.authorization
        task = asyncio.get_running_loop().create_task(self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: FetchRequest) -> None:
        async with self._slots:
            try:
                reply = FetchReply(request.id, readings=await self.client.fetch(request.endpoint))
            except AgentGarbageError as exc:
                reply = FetchReply(request.id, error=str(exc), garbage=True)
            except AgentUsageError as exc:
                reply = FetchReply(request.id, error=str(exc))
            except Exception as exc:  # a bug here must not silence the agent: say what it was
                reply = FetchReply(request.id, error=f"usage worker failed: {exc!r}"[:300])
        self._writer.write(frame(reply))
        await self._writer.drain()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()


async def serve() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    # The frames get stdout's pipe to themselves: anything else that would print (a library's
    # warning, a log line) goes to stderr instead of garbling them.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, replies)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    first = await read_frame(reader)
    if first is None:
        return 0
    settings = settings_decoder.decode(first)
    worker = _Worker(writer, settings.timeout, settings.concurrency)
    try:
        while (body := await read_frame(reader)) is not None:
            worker.take(request_decoder.decode(body))
    finally:
        await worker.close()
    return 0


def main() -> int:
    # The worker lives exactly as long as its stdin: the daemon closes it on the way out (or
    # dies, and the kernel closes it). A Ctrl-C on the terminal, or a stop signal sent to the
    # whole group, is the daemon's to act on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        return asyncio.run(serve())
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the daemon went away: nobody is left to answer


if __name__ == "__main__":
    sys.exit(main())
