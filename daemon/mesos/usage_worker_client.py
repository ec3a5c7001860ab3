"""The daemon's side of the usage worker: ``AgentUsageWorker.fetch(endpoint)`` asks one agent
through the worker process (``usage_worker_main``), as ``AgentUsageClient.fetch`` would in this
process, and raises the same errors.

The worker is started on the first fetch (a standby that never leads starts none) and again on
the fetch after it died: the requests it had not answered fail as ``AgentUsageError`` (those
agents' usage is unknown for that round), the death is logged once, and the next round goes on.
``close`` ends it: its stdin closes, it exits, and it is killed if it has not within
``EXIT_WAIT`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import Callable

import structlog

from scale_scheduler.daemon.mesos.agent_usage_api import AgentGarbageError, AgentUsageError
from scale_scheduler.daemon.mesos.usage_math import ContainerReading
from scale_scheduler.daemon.mesos.usage_worker_protocol import (
    FetchReply,
    FetchRequest,
    WorkerSettings,
    frame,
    read_frame,
    reply_decoder,
)

log = structlog.get_logger(__name__)

EXIT_WAIT = 5.0
"""Seconds the worker has to exit once its stdin is closed."""
ANSWER_GRACE = 5.0
"""Seconds beyond ``usage.timeout`` a request may wait for the worker's reply (the worker
answers every request within the timeout itself: this only catches a worker that hangs)."""
WORKER_MODULE = "scale_scheduler.daemon.mesos.usage_worker_main"


class _Process:
    """One running worker: its process, its pipes and the requests it has yet to answer."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future[FetchReply]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.failure: str | None = None


class AgentUsageWorker:
    def __init__(
        self,
        timeout: float,
        concurrency: int,
        authorization: Callable[[], str | None],
        *,
        command: tuple[str, ...] = (sys.executable, "-m", WORKER_MODULE),
    ) -> None:
        self._settings = WorkerSettings(timeout, concurrency)
        self._authorization = authorization
        self._command = command
        self._current: _Process | None = None
        self._starting: asyncio.Lock | None = None
        self._ids = itertools.count(1)
        self._closed = False
        self.starts = 0
        """Workers started so far (a second one means the first died)."""

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None when none runs)."""
        current = self._current
        return current.process.pid if current is not None else None

    async def fetch(self, endpoint: str) -> list[ContainerReading]:
        """The agent's containers with statistics; raises ``AgentUsageError``."""
        worker = await self._running()
        request_id = next(self._ids)
        answer: asyncio.Future[FetchReply] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = answer
        try:
            stdin = worker.process.stdin
            assert stdin is not None
            stdin.write(frame(FetchRequest(request_id, endpoint, self._authorization())))
            # A timer on the future, not wait_for: no extra task per agent of every round.
            late = asyncio.get_running_loop().call_later(
                self._settings.timeout + ANSWER_GRACE, _give_up, answer
            )
            try:
                reply = await answer
            finally:
                late.cancel()
        finally:
            worker.pending.pop(request_id, None)
        if reply.readings is not None:
            return reply.readings
        if reply.garbage:
            raise AgentGarbageError(reply.error or "garbage")
        raise AgentUsageError(reply.error or "no answer")

    async def _running(self) -> _Process:
        current = self._current
        if current is not None and current.failure is None:
            return current
        if self._closed:
            raise AgentUsageError("the daemon is shutting down")
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:  # many of a round's requests arrive at once: start one
            current = self._current
            if current is not None and current.failure is None:
                return current
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=2**20,
                )
            except OSError as exc:
                raise AgentUsageError(f"cannot start the usage worker: {exc}") from None
            assert process.stdin is not None
            process.stdin.write(frame(self._settings))
            started = _Process(process)
            started.reader = asyncio.get_running_loop().create_task(
                self._read(started), name="usage-worker-replies"
            )
            self._current = started
            self.starts += 1
            log.info("usage_worker_started", pid=process.pid, starts=self.starts)
            return started

    async def _read(self, worker: _Process) -> None:
        """Hand each reply to its request; when the worker's stdout ends, fail what is left."""
        stdout = worker.process.stdout
        assert stdout is not None
        reason = "exited"
        try:
            while (body := await read_frame(stdout)) is not None:
                reply = reply_decoder.decode(body)
                answer = worker.pending.get(reply.id)
                if answer is not None and not answer.done():
                    answer.set_result(reply)
        except (ValueError, OSError) as exc:  # ValueError: a frame cut short or not decodable
            reason = f"sent something unreadable ({exc})"
        code = await self._reap(worker.process)
        worker.failure = f"the usage worker {reason} (exit status {code})"
        for answer in worker.pending.values():
            if not answer.done():
                answer.set_exception(AgentUsageError(worker.failure))
        if not self._closed:
            log.warning("usage_worker_exited", pid=worker.process.pid, reason=worker.failure)

    async def _reap(self, process: asyncio.subprocess.Process) -> int | None:
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(process.wait(), EXIT_WAIT)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await process.wait()

    async def close(self) -> None:
        """End the worker: close its stdin, wait for it to exit (kill it after ``EXIT_WAIT``)."""
        self._closed = True
        worker, self._current = self._current, None
        if worker is None:
            return
        stdin = worker.process.stdin
        if stdin is not None:
            stdin.close()
            with contextlib.suppress(OSError):
                await stdin.wait_closed()
        if worker.reader is not None:
            await worker.reader


def _give_up(answer: asyncio.Future[FetchReply]) -> None:
    if not answer.done():
        answer.set_exception(AgentUsageError("the usage worker did not answer in time"))
