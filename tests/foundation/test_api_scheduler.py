"""``/scheduler/`` and ``/status/`` served exactly as the spec says, plus the error shapes, on
each durable backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient
from api_helpers import assert_text_error
from backends import BACKENDS, db_rows, state_settings

from scale_scheduler.api.app import build_app
from scale_scheduler.daemon.service.config import Config

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(params=BACKENDS)
def config(request: pytest.FixtureRequest, make_config: Callable[..., Config]) -> Config:
    return make_config(
        mesos={"master": "http://mesos-a.example:5051"},
        state=state_settings(request.param, request),
    )


@pytest.fixture
async def client(aiohttp_client: ClientFactory, config: Config) -> TestClient[Any, Any]:
    return await aiohttp_client(build_app(config, connect_mesos=False))


async def test_get_scheduler(client: TestClient[Any, Any]) -> None:
    response = await client.get("/scheduler/")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"is_paused": False}


async def test_patch_scheduler_pauses_and_answers_201_with_location(
    client: TestClient[Any, Any],
) -> None:
    response = await client.patch("/scheduler/", json={"is_paused": True})
    assert response.status == 201
    assert response.content_type == "application/json"
    assert response.headers["Location"] == str(client.make_url("/scheduler/"))
    assert await response.json() == {"is_paused": True}
    assert await (await client.get("/scheduler/")).json() == {"is_paused": True}
    status = await (await client.get("/status/")).json()
    assert status["scheduler"]["is_paused"] is True

    response = await client.patch("/scheduler/", json={"is_paused": False})
    assert (response.status, await response.json()) == (201, {"is_paused": False})


async def test_patch_is_committed_before_the_answer(
    client: TestClient[Any, Any], config: Config
) -> None:
    await client.patch("/scheduler/", json={"is_paused": True})
    assert await db_rows(config, "SELECT is_paused FROM scheduler") == [(1,)]


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b"{not json", ["not valid JSON"]),
        (b"", ["body is empty"]),
        (b"[1, 2]", ["must be a JSON object", "array"]),
        (b'"paused"', ["must be a JSON object", "string"]),
        (b"{}", ["No fields specified for update."]),
        (b'{"a": 1, "is_paused": true, "b": 2}', ["Unexpected fields: a, b"]),
        (b'{"is_paused": "true"}', ["'is_paused' must be a JSON boolean", "string 'true'"]),
        (b'{"is_paused": 1}', ["'is_paused' must be a JSON boolean", "number 1"]),
        (b'{"is_paused": null}', ["'is_paused' must be a JSON boolean", "null"]),
    ],
)
async def test_patch_errors_are_400_text(
    client: TestClient[Any, Any], body: bytes, fragments: list[str]
) -> None:
    response = await client.patch(
        "/scheduler/", data=body, headers={"Content-Type": "application/json"}
    )
    await assert_text_error(response, 400, *fragments)
    # nothing changed
    assert await (await client.get("/scheduler/")).json() == {"is_paused": False}


async def test_missing_scheduler_row_is_500_until_restart(
    aiohttp_client: ClientFactory, config: Config
) -> None:
    client = await aiohttp_client(build_app(config, connect_mesos=False))
    await client.patch("/scheduler/", json={"is_paused": True})
    await db_rows(config, "DELETE FROM scheduler")
    await assert_text_error(await client.get("/scheduler/"), 500, "database entry is missing")
    await assert_text_error(
        await client.patch("/scheduler/", json={"is_paused": False}), 500, "missing"
    )
    assert await db_rows(config, "SELECT count(*) FROM scheduler") == [(0,)]
    await client.close()

    restarted = await aiohttp_client(build_app(config, connect_mesos=False))
    response = await restarted.get("/scheduler/")
    assert (response.status, await response.json()) == (200, {"is_paused": False})


async def test_restart_keeps_is_paused(aiohttp_client: ClientFactory, config: Config) -> None:
    client = await aiohttp_client(build_app(config, connect_mesos=False))
    await client.patch("/scheduler/", json={"is_paused": True})
    await client.close()
    restarted = await aiohttp_client(build_app(config, connect_mesos=False))
    assert await (await restarted.get("/scheduler/")).json() == {"is_paused": True}
    assert (await (await restarted.get("/status/")).json())["scheduler"]["is_paused"] is True


async def test_status_before_any_mesos_connection(
    client: TestClient[Any, Any], config: Config
) -> None:
    response = await client.get("/status/")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == ["master", "scheduler", "queue_depth"]  # resources unknown: left out
    assert body["master"] == {"hostname": "mesos-a.example", "port": 5051, "is_online": False}
    assert body["scheduler"] == {
        "hostname": config.effective_hostname(),
        "is_online": False,
        "is_paused": False,
    }
    assert body["queue_depth"] == 0


async def test_unknown_path_is_404_text(client: TestClient[Any, Any]) -> None:
    await assert_text_error(await client.get("/no/such/thing/"), 404, "Not found: /no/such/thing/")


async def test_wrong_method_is_405_with_allow(client: TestClient[Any, Any]) -> None:
    response = await client.post("/scheduler/", json={"is_paused": True})
    await assert_text_error(response, 405, "Method POST is not allowed on /scheduler/")
    assert set(response.headers["Allow"].split(",")) >= {"GET", "PATCH"}
    response = await client.delete("/status/")
    await assert_text_error(response, 405)
    assert "GET" in response.headers["Allow"]


async def test_missing_trailing_slash_redirects(client: TestClient[Any, Any]) -> None:
    for path in ("/scheduler", "/status"):
        response = await client.get(path, allow_redirects=False)
        assert response.status in (301, 308)
        assert response.headers["Location"] == path + "/"
    followed = await client.patch("/scheduler", json={"is_paused": True})
    assert followed.status == 201  # 308 keeps the method and body
    assert await followed.json() == {"is_paused": True}


async def test_body_over_the_limit_is_413_text(
    aiohttp_client: ClientFactory, make_config: Callable[..., Config]
) -> None:
    client = await aiohttp_client(
        build_app(make_config(api={"max_body_bytes": 2048}), connect_mesos=False)
    )
    response = await client.patch(
        "/scheduler/",
        data=b'{"is_paused": true, "pad": "' + b"x" * 4096 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    await assert_text_error(response, 413, "limit is 2048 bytes", "api.max_body_bytes")
    assert await (await client.get("/scheduler/")).json() == {"is_paused": False}


async def test_one_access_log_event_per_request(client: TestClient[Any, Any]) -> None:
    with structlog.testing.capture_logs() as logs:
        await client.get("/status/")
        await client.patch("/scheduler/", json={})
    events = [e for e in logs if e["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in events] == [
        ("GET", "/status/", 200),
        ("PATCH", "/scheduler/", 400),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in events)
