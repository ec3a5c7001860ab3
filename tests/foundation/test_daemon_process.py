"""The real entry point: the seed's contract and a durable PATCH across kill -9, clean SIGTERM
(each on SQLite and on PostgreSQL), start-up failures."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from backends import BACKENDS, state_settings
from daemon_process import SCRIPT, DaemonProcess, write_config
from ports import free_port


@pytest.fixture(params=BACKENDS)
def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        api={"host": "127.0.0.1", "port": port},
        state={"path": str(tmp_path / "state.db"), **state_settings(request.param, request)},
        # nothing listens there: the daemon serves its API while it retries Mesos
        mesos={"master": f"http://127.0.0.1:{free_port()}", "backoff_max": 1.0},
    )
    process = DaemonProcess(config, port, tmp_path / "daemon.log")
    yield process
    process.stop_quietly()


async def test_the_seed_contract_is_served(daemon: DaemonProcess) -> None:
    """GET/PATCH ``/scheduler/`` and GET ``/status/`` as the spec gives them, over HTTP."""
    daemon.start()
    await daemon.wait_ready()
    async with aiohttp.ClientSession() as session:
        async with session.get(daemon.url + "/scheduler/") as r:
            assert (r.status, r.content_type) == (200, "application/json")
            assert await r.json() == {"is_paused": False}
        async with session.patch(daemon.url + "/scheduler/", json={"is_paused": True}) as r:
            assert (r.status, r.content_type) == (201, "application/json")
            assert r.headers["Location"] == daemon.url + "/scheduler/"
            assert await r.json() == {"is_paused": True}
        async with session.patch(daemon.url + "/scheduler/", json={"paused": True}) as r:
            assert (r.status, r.content_type) == (400, "text/plain")
            assert "Unexpected fields: paused." in await r.text()
        async with session.get(daemon.url + "/status/") as r:
            assert (r.status, r.content_type) == (200, "application/json")
            status = await r.json()
    assert list(status) == ["master", "scheduler", "queue_depth"]  # no agent known yet
    assert set(status["master"]) == {"hostname", "port", "is_online"}
    assert status["master"]["is_online"] is False
    assert status["scheduler"]["is_online"] is False
    assert status["scheduler"]["is_paused"] is True
    assert status["queue_depth"] == 0
    assert await asyncio.to_thread(daemon.terminate) == 0


async def test_acknowledged_patch_survives_kill_9(daemon: DaemonProcess) -> None:
    daemon.start()
    await daemon.wait_ready()
    async with aiohttp.ClientSession() as session:
        last = None
        for value in (True, False, True):
            async with session.patch(daemon.url + "/scheduler/", json={"is_paused": value}) as r:
                assert r.status == 201
                last = value
        daemon.kill9()  # right after the last 201
    daemon.start()
    await daemon.wait_ready()
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/scheduler/") as r:
        assert await r.json() == {"is_paused": last}


async def test_sigterm_exits_0_quickly_and_logs_json(daemon: DaemonProcess) -> None:
    daemon.start()
    await daemon.wait_ready()
    started = time.monotonic()
    assert await asyncio.to_thread(daemon.terminate) == 0
    assert time.monotonic() - started < 10
    events = [json.loads(line) for line in daemon.all_logs().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "daemon_started" in names
    assert names[-1] == "daemon_stopped"
    assert events[-1]["exit_code"] == 0
    assert [e["event"] for e in events if e["level"] == "error"] == []
    assert all({"event", "level", "timestamp"} <= set(e) for e in events)


def test_busy_port_exits_with_its_own_status(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(
            tmp_path / "c.yaml",
            api={"port": port},
            state={"path": str(tmp_path / "s.db")},
            mesos={"master": f"http://127.0.0.1:{free_port()}"},
        )
        result = subprocess.run(
            [str(SCRIPT), "run", "--config", str(config)], capture_output=True, timeout=30
        )
    assert result.returncode == 5
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith(b"{")]
    errors = [e for e in events if e["level"] == "error"]
    assert [(e["event"], e["reason"]) for e in errors] == [("daemon_fatal", "API_BIND_FAILED")]
    assert errors[0]["message"].startswith(f"cannot listen on 127.0.0.1:{port}: ")


def test_config_error_exits_2_with_one_message(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("api:\n  port: [1]\n")
    result = subprocess.run(
        [str(SCRIPT), "run", "--config", str(config)], capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert (
        result.stderr.decode().strip().endswith(f"api.port: expected int, got array (in {config})")
    )
    assert result.stdout == b""
