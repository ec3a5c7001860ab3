"""Secrets never reach the logs: not the API token (right or wrong, in events or in a rendered
traceback), not the Mesos secret of a daemon that subscribes with HTTP
Basic authentication to the simulated master."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from securitykit import AUTH, TOKEN, running_daemon, token_file
from structlog.testing import capture_logs

from scale_scheduler.api.app import CONNECTION, SCHEDULER_CORE, build_app
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.daemon.service.logging_setup import configure_logging

Client = TestClient[web.Request, web.Application]
OTHER_SECRET = "an-old-token-someone-still-sends"
MESOS_SECRET = "mesos-s3cr3t-0123456789"


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a view")


async def _client(
    make_config: Callable[..., Config],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
) -> Client:
    config = make_config(api={"token_file": str(token_file(tmp_path))})
    app = build_app(config, connect_mesos=False)
    app.router.add_post("/boom/", _boom)  # an unexpected error behind the token check
    return await aiohttp_client(app)


async def _requests_with_tokens(client: Client) -> None:
    assert (await client.patch("/scheduler/", json={"is_paused": True}, headers=AUTH)).status == 201
    wrong = {"Authorization": f"Bearer {OTHER_SECRET}"}
    assert (
        await client.patch("/scheduler/", json={"is_paused": True}, headers=wrong)
    ).status == 401
    assert (await client.post("/boom/", headers=AUTH)).status == 500
    assert (await client.get("/status/", headers=AUTH)).status == 200


async def test_the_api_token_appears_in_no_log_event(
    make_config: Callable[..., Config],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
) -> None:
    with capture_logs() as events:
        client = await _client(make_config, aiohttp_client, tmp_path)
        await _requests_with_tokens(client)
        await client.close()
    names = [event["event"] for event in events]
    assert "http_request" in names
    assert "request_failed" in names
    assert TOKEN not in repr(events)
    assert OTHER_SECRET not in repr(events)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The daemon's own logging configuration (JSON lines, tracebacks without
    locals) into a buffer;
    restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access_level = logging.getLogger("aiohttp.access").level
    buffer = io.StringIO()
    configure_logging("debug", "json", buffer)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        structlog.configure(**saved)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.getLogger("aiohttp.access").setLevel(access_level)


async def test_the_api_token_is_not_in_a_logged_traceback(
    make_config: Callable[..., Config],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
    json_log: io.StringIO,
) -> None:
    client = await _client(make_config, aiohttp_client, tmp_path)
    await _requests_with_tokens(client)
    await client.close()
    output = json_log.getvalue()
    assert '"request_failed"' in output
    failed = [json.loads(line) for line in output.splitlines() if '"request_failed"' in line]
    assert failed[0]["exception"][0]["exc_type"] == "RuntimeError"  # the traceback is rendered
    assert '"locals"' not in output  # ... without its frames' variables, where secrets live
    assert TOKEN not in output
    assert OTHER_SECRET not in output


def _mesos_auth(tmp_path: Path, secret: str) -> dict[str, Any]:
    secret_file = tmp_path / "mesos-secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    return {"principal": "scale", "secret_file": str(secret_file)}


def _secret_forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(f"scale:{secret}".encode()).decode()]


async def test_the_mesos_secret_appears_in_no_log_event(tmp_path: Path) -> None:
    credentials = {"credentials": (("scale", MESOS_SECRET),)}
    with capture_logs() as events:
        async with running_daemon(
            tmp_path, agents=2, sim=credentials, mesos=_mesos_auth(tmp_path, MESOS_SECRET)
        ) as daemon:
            core = daemon.app[SCHEDULER_CORE]
            task = {"name": "t", "command": "true", "cpus": 0.1, "mem": 8}
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{daemon.url}/queue/", json=task) as response,
            ):
                assert response.status == 201
            # After SUBSCRIBE: ACCEPT, ACKNOWLEDGE and GET_AGENTS, each with the credentials.
            await daemon.sim.wait_until(
                lambda: not core.board.tasks and len(core.nodes.by_id) == 2, timeout=10
            )
    assert any(event["event"] == "mesos_framework_registered" for event in events)
    for form in _secret_forms(MESOS_SECRET):
        assert form not in repr(events)


async def test_a_refused_mesos_secret_is_reported_but_not_logged(tmp_path: Path) -> None:
    wrong = "not-the-mesos-secret-42"
    credentials = {"credentials": (("scale", MESOS_SECRET),)}
    with capture_logs() as events:
        async with running_daemon(
            tmp_path,
            agents=0,
            sim=credentials,
            subscribed=False,
            mesos=_mesos_auth(tmp_path, wrong),
        ) as daemon:
            status = daemon.app[CONNECTION]
            await daemon.sim.wait_until(lambda: "401" in (status.last_error or ""), timeout=10)
    assert any(event["event"] == "mesos_unauthorized" for event in events)
    for form in _secret_forms(wrong) + _secret_forms(MESOS_SECRET):
        assert form not in repr(events)
