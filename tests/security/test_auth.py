"""Bearer-token authentication of the API: who needs the token for what, the 401 shape, the body
limit with auth on, the constant-time comparison, and the token file read at start-up."""

from __future__ import annotations

import hmac
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from daemon_process import SCRIPT, write_config
from ports import free_port
from securitykit import AUTH, TOKEN, token_file

from scale_scheduler.api import auth
from scale_scheduler.api.app import build_app
from scale_scheduler.api.auth import read_token_file, requires_token
from scale_scheduler.daemon.service.config import ApiConfig, Config, ConfigError

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

WRITES = [
    ("PATCH", "/scheduler/", {"is_paused": True}),
    ("POST", "/queue/", {"name": "t", "command": "true", "cpus": 1, "mem": 1}),
    ("DELETE", "/tasks/1/", None),
    ("PATCH", "/nodes/1/", {"is_paused": True}),
]
READS = ["/scheduler/", "/status/", "/openapi.json", "/healthz", "/readyz", "/metrics"]
PUBLIC = ["/", "/dashboard.css", "/dashboard.js"]


@pytest.fixture
def make_client(
    make_config: Callable[..., Config],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
) -> MakeClient:
    """The API alone (no Mesos) with the token on, plus any ``api`` settings."""

    async def make(**api: Any) -> Client:
        config = make_config(api={"token_file": str(token_file(tmp_path)), **api})
        return await aiohttp_client(build_app(config, connect_mesos=False))

    return make


async def assert_401(response: Any, *fragments: str) -> None:
    body = await response.text()
    assert response.status == 401, body
    assert response.content_type == "text/plain"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    for fragment in fragments:
        assert fragment in body or fragment in response.headers["WWW-Authenticate"]
    assert TOKEN not in body


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_writes_without_the_right_token_get_401(
    make_client: MakeClient, method: str, path: str, body: Any
) -> None:
    client = await make_client()
    await assert_401(await client.request(method, path, json=body), "api.token_file")
    for header in ("Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        response = await client.request(method, path, json=body, headers={"Authorization": header})
        assert response.status == 401, header
    await assert_401(
        await client.request(method, path, json=body, headers={"Authorization": "Bearer nope"}),
        'error="invalid_token"',
    )


async def test_the_right_token_is_let_through_and_nothing_changes_without_it(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    await client.patch("/scheduler/", json={"is_paused": True})
    assert await (await client.get("/scheduler/")).json() == {"is_paused": False}
    response = await client.patch("/scheduler/", json={"is_paused": True}, headers=AUTH)
    assert response.status == 201
    lower = {"Authorization": f"bearer  {TOKEN} "}  # scheme in any case, spaces around
    response = await client.patch("/scheduler/", json={"is_paused": False}, headers=lower)
    assert response.status == 201


async def test_reads_stay_open_unless_read_auth(make_client: MakeClient) -> None:
    client = await make_client()
    for path in READS + PUBLIC:
        assert (await client.get(path)).status != 401, path
    reads_too = await make_client(read_auth=True)
    for path in READS:
        await assert_401(await reads_too.get(path))
        assert (await reads_too.get(path, headers=AUTH)).status != 401, path
    for path in PUBLIC:  # the page and its files hold no data: it loads, then asks
        assert (await reads_too.get(path)).status == 200, path


async def test_no_token_file_means_no_authentication(
    make_config: Callable[..., Config], aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await aiohttp_client(build_app(make_config(), connect_mesos=False))
    assert (await client.patch("/scheduler/", json={"is_paused": True})).status == 201


@pytest.mark.parametrize(
    ("api", "method", "path", "needed"),
    [
        (ApiConfig(), "PATCH", "/scheduler/", False),
        (ApiConfig(token_file="t"), "GET", "/scheduler/", False),
        (ApiConfig(token_file="t"), "HEAD", "/status/", False),
        (ApiConfig(token_file="t"), "POST", "/queue/", True),
        (ApiConfig(token_file="t"), "DELETE", "/tasks/1/", True),
        (ApiConfig(token_file="t"), "POST", "/metrics", False),  # a probe: 405, not 401
        (ApiConfig(token_file="t", read_auth=True), "GET", "/scheduler/", True),
        (ApiConfig(token_file="t", read_auth=True), "GET", "/healthz", True),
        (ApiConfig(token_file="t", read_auth=True), "GET", "/metrics", True),
        (ApiConfig(token_file="t", read_auth=True), "GET", "/", False),
        (ApiConfig(token_file="t", read_auth=True), "POST", "/", True),
        (ApiConfig(token_file="t", read_auth=True), "GET", "/dashboard.js", False),
        (ApiConfig(token_file="t", read_auth=True), "GET", "/dashboard/state/", True),
    ],
)
def test_who_needs_the_token(api: ApiConfig, method: str, path: str, needed: bool) -> None:
    assert requires_token(api, method, path) is needed


async def test_body_limit_holds_with_auth_on(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=1024)
    big = b'{"is_paused": true, "pad": "' + b"x" * 4096 + b'"}'
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.patch("/scheduler/", data=big, headers=headers)
    assert response.status == 413
    assert response.content_type == "text/plain"
    assert "api.max_body_bytes" in await response.text()
    # Without the token the body is never read: 401 first.
    await assert_401(
        await client.patch("/scheduler/", data=big, headers={"Content-Type": "application/json"})
    )


async def test_tokens_are_compared_in_constant_time(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    client = await make_client()
    await client.patch(
        "/scheduler/", json={"is_paused": True}, headers={"Authorization": "Bearer x"}
    )
    await client.patch("/scheduler/", json={"is_paused": True}, headers=AUTH)
    assert calls == [(TOKEN.encode(), b"x"), (TOKEN.encode(), TOKEN.encode())]


# --- the token file -----------------------------------------------------------------------------


def test_the_token_file_is_read_stripped(tmp_path: Path) -> None:
    token = read_token_file(str(token_file(tmp_path, f"\n  {TOKEN}\r\n")))
    assert token.matches(TOKEN)
    assert not token.matches(TOKEN + "\n")
    assert TOKEN not in repr(token)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "is empty"),
        (b" \n\t\n", "is empty"),
        (b"two words\n", "without spaces or control characters"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_an_unusable_token_file_is_a_config_error_naming_the_key(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"^api\.token_file: ") as raised:
        read_token_file(str(path))
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


async def test_a_bad_token_file_stops_start_up_before_the_store_opens(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(api={"token_file": str(tmp_path / "missing")})
    runner = web.AppRunner(build_app(config, connect_mesos=False))
    with pytest.raises(ConfigError, match=r"api\.token_file"):
        await runner.setup()
    await runner.cleanup()
    assert not os.path.exists(config.state.path)  # noqa: ASYNC240  (a test assertion)


def test_the_daemon_exits_2_on_an_empty_token_file(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml",
        api={"host": "127.0.0.1", "port": free_port(), "token_file": str(token_file(tmp_path, ""))},
        state={"path": str(tmp_path / "state.db")},
        mesos={"master": f"http://127.0.0.1:{free_port()}"},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    done = subprocess.run(
        [str(SCRIPT), "run", "--config", str(config)], capture_output=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert b"api.token_file" in done.stdout + done.stderr
