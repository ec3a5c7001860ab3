"""What fuzzing found, pinned down: ids and numbers beyond what the database holds are 404/400
(they were 500), and integer fields written as whole floats (``3.0``) are integers, as the JSON
Schema of ``/openapi.json`` says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from securitykit import running_daemon

TASK = {"name": "t", "command": "true", "cpus": 0.1, "mem": 8}
HUGE = 2**63  # one past SQLite's largest integer


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with running_daemon(tmp_path, agents=0) as daemon, aiohttp.ClientSession() as session:
        yield session, daemon.url


async def _status_and_text(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, str]:
    async with session.request(method, url, allow_redirects=False, **kw) as response:
        return response.status, await response.text()


@pytest.mark.parametrize(
    "path",
    [f"/tasks/{HUGE}/", f"/tasks/{'9' * 5000}/", f"/nodes/{HUGE}/", f"/nodes/{'9' * 5000}/"],
)
async def test_ids_beyond_the_database_are_404(
    api: tuple[aiohttp.ClientSession, str], path: str
) -> None:
    session, url = api
    for method in ("GET", "DELETE") if path.startswith("/tasks/") else ("GET", "PATCH"):
        body = {"is_paused": True} if method == "PATCH" else None
        status, text = await _status_and_text(session, method, url + path, json=body)
        assert status == 404, (method, path, text)
        assert text.startswith("No ")


@pytest.mark.parametrize(
    ("field", "value"),
    [("priority", HUGE), ("priority", -HUGE - 1), ("gpus", HUGE), ("gpus", 2**70)],
)
async def test_integers_beyond_the_database_are_400(
    api: tuple[aiohttp.ClientSession, str], field: str, value: int
) -> None:
    session, url = api
    status, text = await _status_and_text(
        session, "POST", url + "/queue/", json={**TASK, field: value}
    )
    assert status == 400
    assert f"Field {field!r} is invalid" in text


async def test_whole_floats_are_integers(api: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = api
    body = {**TASK, "max_attempts": 3.0, "priority": -7.0, "gpus": 0.0, "ports": 2.0}
    async with session.post(url + "/queue/", json=[TASK, body]) as response:
        assert response.status == 201, await response.text()
        created = (await response.json())[1]
    assert (created["max_attempts"], created["priority"], created["gpus"], created["ports"]) == (
        3,
        -7,
        0,
        2,
    )
    # A fraction is still not an integer, and the message is the one it always was.
    status, text = await _status_and_text(
        session, "POST", url + "/queue/", json={**TASK, "priority": 1.5}
    )
    assert status == 400
    assert "Field 'priority' is invalid: expected int, got float" in text
    status, text = await _status_and_text(
        session, "POST", url + "/queue/", json={**TASK, "max_attempts": 0.0}
    )
    assert status == 400
    assert "Field 'max_attempts' is invalid" in text


async def test_an_empty_state_filter_is_no_filter(api: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = api
    status, _ = await _status_and_text(session, "POST", url + "/queue/", json=TASK)
    assert status == 201
    async with session.get(url + "/tasks/?state=") as response:
        assert response.status == 200
        assert (await response.json())["count"] == 1
