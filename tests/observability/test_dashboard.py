"""The dashboard's server side: the page and its assets from the package, the token mode the page
is told, one-shot snapshots, and the Server-Sent Events stream (shared builds, shutdown)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from daemonkit import eventually
from obskit import Client

from scale_scheduler.api.app import build_app
from scale_scheduler.api.dashboard import DASHBOARD, auth_mode
from scale_scheduler.daemon.service.config import Config

ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(make_config: Callable[..., Config], aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(build_app(make_config(), connect_mesos=False))


async def test_page_and_assets_come_from_the_package(client: Client) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert 'data-auth="none"' in html
    assert "{{" not in html
    assert 'href="/dashboard.css"' in html
    assert 'src="/dashboard.js"' in html
    for path, kind in (("/dashboard.css", "text/css"), ("/dashboard.js", "text/javascript")):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == kind
        body = await response.text()
        # Works offline: nothing is fetched from another host.
        assert not re.search(r"(src|href)=\"https?:|url\(|@import|//cdn", body), path
    js = await (await client.get("/dashboard.js")).text()
    assert "/dashboard/events/" in js
    assert "innerHTML" not in js  # daemon data goes in as text only


async def test_assets_are_revalidated_with_etags(client: Client) -> None:
    first = await client.get("/dashboard.js")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    again = await client.get("/dashboard.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


async def test_the_page_is_told_when_a_token_is_needed(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("page-token\n")
    config = make_config(api={"token_file": str(token_file)})
    client = await aiohttp_client(build_app(config, connect_mesos=False))
    html = await (await client.get("/")).text()
    assert 'data-auth="write"' in html
    assert "page-token" not in html
    assert auth_mode(config) == "write"
    reads_too = make_config(api={"token_file": str(token_file), "read_auth": True})
    assert auth_mode(reads_too) == "all"
    assert auth_mode(make_config()) == "none"


async def test_state_is_one_snapshot(client: Client) -> None:
    response = await client.get("/dashboard/state/")
    assert response.status == 200
    snapshot = await response.json()
    assert snapshot["scheduler"]["is_paused"] is False
    assert snapshot["scheduler"]["connection"] == "DISCONNECTED"
    assert snapshot["queue_depth"] == 0
    assert snapshot["nodes"] == {"count": 0, "items": []}
    assert snapshot["recent"] == []
    await client.patch("/scheduler/", json={"is_paused": True})
    snapshot = await (await client.get("/dashboard/state/")).json()
    assert snapshot["scheduler"]["is_paused"] is True


async def _events(response: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` events of an SSE response, as (event name, decoded data)."""
    events: list[tuple[str, dict[str, Any]]] = []
    buffer = b""
    while len(events) < count:
        chunk = await response.content.readany()
        assert chunk, "the stream ended early"
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in frame.decode().splitlines() if ": " in line
            )
            if "data" in fields:
                events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def test_event_stream_pushes_snapshots_built_once_for_every_page(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory
) -> None:
    app = build_app(make_config(), connect_mesos=False)
    hub = app[DASHBOARD]
    hub.interval = 0.05
    client = await aiohttp_client(app)
    first = await client.get("/dashboard/events/")
    second = await client.get("/dashboard/events/")
    assert first.status == 200
    assert first.headers["Content-Type"] == "text/event-stream"
    assert first.headers["Cache-Control"] == "no-store"
    one = await _events(first, 2)
    assert [name for name, _data in one] == ["snapshot", "snapshot"]
    assert one[0][1]["scheduler"]["connection"] == "DISCONNECTED"
    await client.patch("/scheduler/", json={"is_paused": True})
    seen: list[bool] = []
    while not any(seen):  # one chunk may carry more than one event
        seen.extend(data["scheduler"]["is_paused"] for _name, data in await _events(second, 1))
    assert hub.watchers == 2
    first.close()
    second.close()
    await eventually(lambda: hub.watchers == 0)
    # The stream is not an API latency: it stays out of the request histogram.
    metrics = await (await client.get("/metrics")).text()
    assert 'route="/dashboard/events/"' not in metrics


async def test_shutdown_ends_open_streams(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory
) -> None:
    app = build_app(make_config(), connect_mesos=False)
    app[DASHBOARD].interval = 0.05
    client = await aiohttp_client(app)
    stream = await client.get("/dashboard/events/")
    await _events(stream, 1)
    rest = asyncio.ensure_future(stream.content.read())
    # aiohttp waits for open handlers on shutdown: the hub must end the stream itself.
    await asyncio.wait_for(client.server.close(), 10)
    assert await asyncio.wait_for(rest, 10) == b""  # a clean end of the stream
