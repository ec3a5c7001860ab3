"""Accept errors (EMFILE) are logged once per burst, not once per retry: in a real process out
of file descriptors, and ``BurstLog``'s rule on a fake clock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import structlog
from structlog.testing import capture_logs

from scale_scheduler.daemon.service.burst_log import BurstLog

# A listener that keeps every connection open, in a process with few file descriptors left.
CHILD = """
import asyncio, resource, sys
from scale_scheduler.daemon.service.accept_errors import install_accept_error_log
from scale_scheduler.daemon.service.logging_setup import configure_logging

async def main():
    configure_logging("info", "json")
    loop = asyncio.get_running_loop()
    if sys.argv[1] == "throttled":
        install_accept_error_log(loop)
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
    print(server.sockets[0].getsockname()[1], file=sys.stderr, flush=True)
    await asyncio.sleep(float(sys.argv[2]))

asyncio.run(main())
"""
CONNECTIONS = 80
WINDOW_SECONDS = 2.5


async def run_out_of_descriptors(mode: str) -> list[str]:
    """The child's log lines after ``CONNECTIONS`` clients connected to it."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        mode,
        str(WINDOW_SECONDS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    assert child.stdout is not None
    port = int(await asyncio.wait_for(child.stderr.readline(), 10))
    clients = []
    for _ in range(CONNECTIONS):  # the kernel queues what the child cannot accept
        clients.append(await asyncio.open_connection("127.0.0.1", port))
    output = await asyncio.wait_for(child.stdout.read(), 30)  # until the child exits
    await child.wait()
    for _reader, writer in clients:
        writer.close()
    return output.decode(errors="replace").splitlines()


async def test_emfile_is_one_line_per_burst_in_a_real_process() -> None:
    flood = await run_out_of_descriptors("default")
    asyncio_lines = [line for line in flood if "socket.accept() out of system resource" in line]
    assert len(asyncio_lines) > 10  # what the issue saw: a line per retry

    throttled = await run_out_of_descriptors("throttled")
    assert not [line for line in throttled if "out of system resource" in line]
    events = [json.loads(line) for line in throttled if line.startswith("{")]
    failed = [event for event in events if event["event"] == "api_accept_failed"]
    assert len(failed) == 1, throttled[:5]
    assert failed[0]["error"] == "EMFILE"
    assert failed[0]["level"] == "warning"
    assert "exception" not in failed[0]


def test_burst_log_writes_the_first_then_one_line_per_interval() -> None:
    now = [100.0]
    with capture_logs() as events:
        burst = BurstLog(structlog.get_logger("t"), "flood", interval=10.0, clock=lambda: now[0])
        for step in range(1000):  # 1,000 events within 5 s: one line
            now[0] = 100.0 + step * 0.005
            burst.note(n=step)
        now[0] = 110.5  # still coming after the interval: one more line, with the count
        burst.note(n=1000)
        now[0] = 200.0  # a later burst
        burst.note(n=1001)
    lines: list[dict[str, Any]] = [e for e in events if e["event"] == "flood"]
    assert [(e["n"], e["not_logged_since_last"]) for e in lines] == [(0, 0), (1000, 999), (1001, 0)]
    assert all(e["log_level"] == "warning" for e in lines)
