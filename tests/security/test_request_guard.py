"""``api.request_guard`` in process: the Host, Origin and Content-Type rules, the security
headers, ``Location`` from the daemon's own address, and one ``Authorization`` header."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict
from securitykit import AUTH, TOKEN, token_file

from scale_scheduler.api.app import SCHEDULER, build_app
from scale_scheduler.api.own_names import resolve_own_names
from scale_scheduler.api.request_guard import SECURITY_HEADERS
from scale_scheduler.daemon.service.authority import parse_authority
from scale_scheduler.daemon.service.config import Config, ConfigError, parse_config

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
PAUSE = b'{"is_paused": true}'


@pytest.fixture
def make_client(
    make_config: Callable[..., Config],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> MakeClient:
    async def make(**sections: Any) -> Client:
        return await aiohttp_client(build_app(make_config(**sections), connect_mesos=False))

    return make


def own_host(client: Client, name: str = "127.0.0.1") -> str:
    return f"{name}:{client.port}"


async def patch(client: Client, headers: dict[str, str], body: bytes = PAUSE) -> Any:
    sent = {"Content-Type": "application/json", **headers}
    return await client.patch("/scheduler/", data=body, headers=sent)


def paused(client: Client) -> bool:
    return client.app[SCHEDULER].state.is_paused


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM.", ("example.com", None)),
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[0:0::1]:80", ("::1", 80)),
        ("localhost", ("localhost", None)),
        ("evil.example:0", None),
        ("evil.example:99999", None),
        ("user@evil.example", None),
        ("evil.example/path", None),
        ("a..b", None),
        ("", None),
        ("[nonsense]", None),
    ],
)
def test_parse_authority(text: str, expected: tuple[str, int | None] | None) -> None:
    assert parse_authority(text) == expected


def test_allowed_hosts_are_validated() -> None:
    config = parse_config({"api": {"allowed_hosts": ["proxy.example", "ui.example:443"]}}, {})
    assert config.api.allowed_hosts == ["proxy.example", "ui.example:443"]
    with pytest.raises(ConfigError, match=r"api\.allowed_hosts: .*'http://x/'"):
        parse_config({"api": {"allowed_hosts": ["http://x/"]}}, {})


def test_own_names() -> None:
    config = parse_config(
        {
            "api": {"host": "0.0.0.0", "allowed_hosts": ["proxy.example", "ui.example:443"]},
            "mesos": {"hostname": "sched.example", "webui_url": "https://web.example/ui/"},
        },
        {},
    )
    names = resolve_own_names(config)
    local = ("10.0.0.5", 8000)
    for host in ("localhost", "127.0.0.1", "::1", "sched.example", "10.0.0.5", "web.example"):
        assert names.allows(host, 8000, *local), host
        assert not names.allows(host, 8001, *local), host  # the port must match too
    assert names.allows("web.example", 443, *local)  # webui_url's own port
    assert names.allows("proxy.example", 1234, *local)  # no port given: any
    assert names.allows("ui.example", 443, *local)
    assert not names.allows("ui.example", 8000, *local)
    assert not names.allows("evil.example", 8000, *local)
    specific = resolve_own_names(parse_config({"api": {"host": "10.0.0.5"}}, {}))
    assert not specific.allows("::1", 8000, *local)  # not bound to loopback


async def test_a_foreign_host_is_misdirected_for_reads_and_writes(make_client: MakeClient) -> None:
    client = await make_client()
    for host in ("evil.example", f"evil.example:{client.port}", "127.0.0.1:1", "127.0.0.1"):
        response = await client.get("/dashboard/state/", headers={"Host": host})
        assert response.status == 421, host
        assert response.content_type == "text/plain"
        assert "api.allowed_hosts" in await response.text()
        assert (await patch(client, {"Host": host})).status == 421
    assert not paused(client)
    for name in ("127.0.0.1", "localhost", "LOCALHOST."):
        response = await client.get("/dashboard/state/", headers={"Host": own_host(client, name)})
        assert response.status == 200, name


async def test_allowed_hosts_extend_the_own_names(make_client: MakeClient) -> None:
    client = await make_client(api={"allowed_hosts": ["proxy.example"]})
    assert (await client.get("/status/", headers={"Host": "proxy.example"})).status == 200
    assert (await client.get("/status/", headers={"Host": "other.example"})).status == 421


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/merge-patch+json",
        None,
    ],
)
async def test_a_change_with_a_body_must_be_json(
    make_client: MakeClient, content_type: str | None
) -> None:
    client = await make_client()
    if content_type is None:  # else aiohttp's client adds application/octet-stream
        response = await client.patch("/scheduler/", data=PAUSE, skip_auto_headers=["Content-Type"])
    else:
        response = await patch(client, {"Content-Type": content_type})
    assert response.status == 415, await response.text()
    assert response.content_type == "text/plain"
    assert "application/json" in await response.text()
    assert not paused(client)


async def test_json_content_types_that_are_accepted(make_client: MakeClient) -> None:
    client = await make_client()
    for content_type in ("application/json", "Application/JSON; charset=utf-8"):
        assert (await patch(client, {"Content-Type": content_type})).status == 201
    # A DELETE without a body needs no Content-Type (404: no such task, but past the guard).
    response = await client.delete("/tasks/5/", headers={"Content-Type": ""})
    assert response.status != 415


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port on this machine is another origin
        {"Origin": "http://127.0.0.1"},
        {"Origin": "garbage"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_change_from_another_origin_is_forbidden(
    make_client: MakeClient, headers: dict[str, str]
) -> None:
    client = await make_client()
    response = await patch(client, headers)
    assert response.status == 403
    assert response.content_type == "text/plain"
    assert not paused(client)


async def test_a_change_from_the_own_origin_is_allowed(make_client: MakeClient) -> None:
    client = await make_client()
    own = {"Origin": f"http://localhost:{client.port}", "Sec-Fetch-Site": "same-origin"}
    assert (await patch(client, own)).status == 201
    assert paused(client)
    # Reads are not changed by Origin (a cross-origin page cannot read the answer anyway).
    response = await client.get("/scheduler/", headers={"Origin": "http://evil.example"})
    assert response.status == 200


async def test_location_is_the_daemons_own_address_not_the_host(make_client: MakeClient) -> None:
    client = await make_client()
    response = await patch(client, {"Host": own_host(client, "localhost")})
    assert response.status == 201
    assert response.headers["Location"] == f"http://127.0.0.1:{client.port}/scheduler/"


async def test_every_answer_carries_the_security_headers(make_client: MakeClient) -> None:
    client = await make_client()
    answers = [
        await client.get("/"),
        await client.get("/dashboard.js"),
        await client.get("/status/"),
        await client.get("/nowhere/"),
        await client.get("/status/", headers={"Host": "evil.example"}),
        await patch(client, {}),
    ]
    for response in answers:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp


async def test_the_page_needs_no_inline_script_or_style(make_client: MakeClient) -> None:
    page = await (await (await make_client()).get("/")).text()
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/dashboard.js" defer>']
    assert re.search(r"\sstyle=|<style", page) is None
    assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers


async def test_two_authorization_headers_are_refused_in_either_order(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(api={"token_file": str(token_file(tmp_path))})
    wrong = "Bearer not-the-token"
    for first, second in ((AUTH["Authorization"], wrong), (wrong, AUTH["Authorization"])):
        headers = CIMultiDict[str]([("Authorization", first), ("Authorization", second)])
        headers["Content-Type"] = "application/json"
        response = await client.patch("/scheduler/", data=PAUSE, headers=headers)
        assert response.status == 400
        text = await response.text()
        assert "one Authorization header" in text
        assert TOKEN not in text
    assert not paused(client)
    # Reads too, and without a token configured.
    plain = await make_client()
    twice = CIMultiDict[str]([("Authorization", "Bearer a"), ("Authorization", "Bearer b")])
    assert (await plain.get("/status/", headers=twice)).status == 400
