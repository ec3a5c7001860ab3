"""The usage worker process: the daemon asks agents through it and gets what the in-process
client would have given, errors included; its death costs one round's answers, never the
poller; it never sees the credentials on its command line or in its environment; it ends
with the daemon."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from scale_scheduler.daemon.mesos.agent_usage_api import (
    AgentGarbageError,
    AgentUsageError,
    parse_get_containers,
)
from scale_scheduler.daemon.mesos.usage_worker_client import AgentUsageWorker

SECRET = "Basic c2NhbGU6dG9wLXNlY3JldA=="
CONTAINERS = {
    "type": "GET_CONTAINERS",
    "get_containers": {
        "containers": [
            {
                "framework_id": {"value": "fw-1"},
                "executor_id": {"value": f"task-{i}"},
                "container_id": {"value": f"c-{i}"},
                "resource_statistics": {
                    "timestamp": 1000.0 + i,
                    "cpus_user_time_secs": 1.5 * i,
                    "cpus_system_time_secs": 0.5,
                    "mem_rss_bytes": 1048576.0 * i,
                },
            }
            for i in range(3)
        ]
    },
}


class Agents:
    """One aiohttp server playing several agents by path: ``/ok``, ``/garbage``, ``/error``,
    ``/slow`` (answers once ``release`` is set), ``/old`` (no v1 API)."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        self.release = asyncio.Event()
        self.slow_arrived = asyncio.Event()

    async def api(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        kind = request.match_info["kind"]
        if kind == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="application/json")
        if kind == "error":
            return web.Response(status=503, text="agent is recovering")
        if kind == "old":
            return web.Response(status=404)
        if kind == "slow":
            self.slow_arrived.set()
            await self.release.wait()
        return web.Response(body=msgspec.json.encode(CONTAINERS), content_type="application/json")

    async def statistics(self, request: web.Request) -> web.Response:
        entries = [
            {
                "framework_id": "fw-1",
                "executor_id": "old-task",
                "statistics": {"timestamp": 5.0, "cpus_user_time_secs": 2.0},
            }
        ]
        return web.json_response(entries)


@pytest.fixture
async def agents() -> AsyncIterator[tuple[Agents, str]]:
    fake = Agents()
    app = web.Application()
    app.router.add_post("/{kind}/api/v1", fake.api)
    app.router.add_get("/{kind}/monitor/statistics", fake.statistics)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, f"http://127.0.0.1:{server.port}"
    finally:
        fake.release.set()
        await server.close()


@pytest.fixture
async def worker() -> AsyncIterator[AgentUsageWorker]:
    started = AgentUsageWorker(2.0, 8, lambda: SECRET)
    try:
        yield started
    finally:
        await started.close()


async def test_readings_are_those_the_agent_answered_with_its_credentials(
    agents: tuple[Agents, str], worker: AgentUsageWorker
) -> None:
    fake, base = agents
    readings = await worker.fetch(f"{base}/ok")
    assert readings == parse_get_containers(msgspec.json.encode(CONTAINERS))
    assert fake.authorizations == [SECRET]
    pid = worker.pid
    assert pid is not None
    # The credentials went over the pipe, not where other users of the host can read them.
    assert SECRET.encode() not in _proc(pid, "cmdline")
    assert SECRET.encode() not in _proc(pid, "environ")


async def test_an_agent_without_the_v1_api_is_read_on_monitor_statistics(
    agents: tuple[Agents, str], worker: AgentUsageWorker
) -> None:
    _, base = agents
    [reading] = await worker.fetch(f"{base}/old")
    assert (reading.executor_id, reading.sample.cpu_seconds) == ("old-task", 2.0)


async def test_errors_come_back_as_the_in_process_client_raises_them(
    agents: tuple[Agents, str], worker: AgentUsageWorker
) -> None:
    _, base = agents
    with pytest.raises(AgentGarbageError, match="not understood"):
        await worker.fetch(f"{base}/garbage")
    with pytest.raises(AgentUsageError, match="answered 503") as raised:
        await worker.fetch(f"{base}/error")
    assert not isinstance(raised.value, AgentGarbageError)
    with pytest.raises(AgentUsageError, match="POST failed"):
        await worker.fetch("http://127.0.0.1:1/slave(1)")
    # One worker served them all.
    assert worker.starts == 1


async def test_a_dead_worker_fails_its_requests_and_the_next_fetch_starts_another(
    agents: tuple[Agents, str], worker: AgentUsageWorker
) -> None:
    fake, base = agents
    await worker.fetch(f"{base}/ok")
    first = worker.pid
    assert first is not None
    with capture_logs() as logs:
        pending = asyncio.create_task(worker.fetch(f"{base}/slow"))
        await asyncio.wait_for(fake.slow_arrived.wait(), 10)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(AgentUsageError, match="usage worker exited"):
            await asyncio.wait_for(pending, 10)
        assert await worker.fetch(f"{base}/ok")
    assert worker.starts == 2
    assert worker.pid not in (None, first)
    assert [e["event"] for e in logs if e["event"].startswith("usage_worker")] == [
        "usage_worker_exited",
        "usage_worker_started",
    ]


async def test_a_worker_that_sends_garbage_is_replaced(agents: tuple[Agents, str]) -> None:
    _, base = agents
    liar = AgentUsageWorker(
        2.0, 8, lambda: None, command=(sys.executable, "-c", "print('not a frame' * 10)")
    )
    try:
        with capture_logs() as logs, pytest.raises(AgentUsageError, match="unreadable"):
            await liar.fetch(f"{base}/ok")
        assert [e["event"] for e in logs if e["event"] == "usage_worker_exited"] == [
            "usage_worker_exited"
        ]
    finally:
        await liar.close()


async def test_close_ends_the_worker_and_later_fetches_are_refused(
    agents: tuple[Agents, str], worker: AgentUsageWorker
) -> None:
    _, base = agents
    await worker.fetch(f"{base}/ok")
    pid = worker.pid
    assert pid is not None
    await worker.close()
    assert worker.pid is None
    assert not _alive(pid)
    with pytest.raises(AgentUsageError, match="shutting down"):
        await worker.fetch(f"{base}/ok")


async def test_the_worker_exits_when_the_daemon_dies(tmp_path: Path) -> None:
    """The daemon killed with -9 closes the worker's stdin with it: the worker exits alone."""
    script = tmp_path / "daemon.py"
    script.write_text(
        "import asyncio, sys\n"
        "from scale_scheduler.daemon.mesos.usage_worker_client import AgentUsageWorker\n"
        "async def main():\n"
        "    worker = AgentUsageWorker(1.0, 1, lambda: None)\n"
        "    try:\n"
        "        await worker.fetch('http://127.0.0.1:1/x')\n"
        "    except Exception:\n"
        "        pass\n"
        "    print('worker', worker.pid, flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE
    )
    assert daemon.stdout is not None
    line = b""
    while not line.startswith(b"worker "):  # after the daemon's log lines
        line = await asyncio.wait_for(daemon.stdout.readline(), 30)
        assert line, "the daemon ended without naming its worker"
    child = int(line.split()[1])
    daemon.kill()
    await daemon.wait()
    for _ in range(200):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)  # poll interval: the orphan notices its stdin's end
    assert not _alive(child)


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _alive(pid: int) -> bool:
    """Running (an exited orphan is reaped by init, or is a zombie until then)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
