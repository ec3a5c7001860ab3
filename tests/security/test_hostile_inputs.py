"""What an independent adversarial review of the hardening found after it landed: a client that
hangs up mid-body is not a daemon failure, an over-long ``after`` is a 400, error messages quote
a client's value only briefly, and task names may not carry invisible format characters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_process import DaemonProcess, write_config
from ports import free_port
from securitykit import running_daemon

from scale_scheduler.api.json_body import ECHO_LIMIT

TASK: dict[str, Any] = {"name": "t", "command": "true", "cpus": 0.1, "mem": 8}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with running_daemon(tmp_path, agents=1) as daemon, aiohttp.ClientSession() as session:
        yield session, daemon.url


async def test_an_over_long_after_is_400_not_500(api: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = api
    for digits in ("9" * 20, "9" * 4301, "1" * 6000):
        async with session.get(url + "/tasks/", params={"after": digits}) as response:
            text = await response.text()
            assert response.status == 400, text
            assert "Query parameter 'after' must be a task id" in text
            assert len(text) < 200  # the value is quoted briefly, not echoed whole


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/" + "x" * 8000 + "/", {}),  # the 404 names the path
        ("/tasks/", {"state": "Q" * 8000}),  # unknown task state
    ],
)
async def test_error_messages_quote_a_value_briefly(
    api: tuple[aiohttp.ClientSession, str], path: str, params: dict[str, str]
) -> None:
    session, url = api
    async with session.get(url + path, params=params) as response:
        text = await response.text()
    assert response.status in (400, 404)
    assert "x" * (ECHO_LIMIT + 1) not in text
    assert "Q" * (ECHO_LIMIT + 1) not in text
    assert len(text) < 400


@pytest.mark.parametrize(
    "character",
    ["\u202e", "\u2028", "\u2029", "\u200b", "\u200f", "\u2066", "\ufeff"],
)
async def test_names_refuse_invisible_format_characters(
    api: tuple[aiohttp.ClientSession, str], character: str
) -> None:
    session, url = api
    async with session.post(url + "/queue/", json={**TASK, "name": f"ab{character}cd"}) as answer:
        text = await answer.text()
    assert answer.status == 400, text
    assert "Field 'name'" in text


async def test_ordinary_unicode_names_are_accepted(api: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = api
    async with session.post(url + "/queue/", json={**TASK, "name": "café 日本 ñ"}) as answer:
        assert answer.status == 201, await answer.text()


async def test_a_client_hanging_up_mid_body_is_not_a_daemon_failure(tmp_path: Path) -> None:
    """A POST that promises a body and closes half-way: one info line, no traceback, no 500."""
    port = free_port()
    nobody = free_port()  # no master listens there: the API serves all the same
    config = write_config(
        tmp_path / "config.yaml",
        api={"host": "127.0.0.1", "port": port},
        mesos={"master": f"http://127.0.0.1:{nobody}"},
        state={"path": str(tmp_path / "state.db")},
    )
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        await daemon.wait_ready()
        for _ in range(3):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /queue/ HTTP/1.1\r\n"
                + f"Host: 127.0.0.1:{port}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                + b'{"name": "t", '
            )
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "request_aborted" not in daemon.all_logs():
                assert loop.time() < deadline, daemon.logs()
                await asyncio.sleep(0.05)  # poll interval
            async with session.get(daemon.url + "/healthz") as response:
                assert response.status == 200
    finally:
        daemon.stop_quietly()
    events = [json.loads(line) for line in daemon.all_logs().splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("level") == "error"], daemon.logs()
    assert "Traceback" not in daemon.all_logs()
    assert not [e for e in events if e["event"] == "http_request" and e.get("status") == 500]
    assert [e for e in events if e["event"] == "request_aborted"]
