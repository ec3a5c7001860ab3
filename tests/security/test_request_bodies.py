"""Bad request bodies, ids and pages get 400/404 naming the problem, never 500 (issue 14 items 3,
4, 13 and 17): broken and truncated JSON, nesting past what msgspec will skip, values beyond the
documented bounds (``api/limits.py``), other scripts' digits in ids and pages, and a batch
decoded in chunks with the event loop free in between. Items 3 and 4 also against the real
``scale-scheduler run`` process."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from daemon_process import SCRIPT, DaemonProcess, write_config
from ports import free_port
from securitykit import running_daemon

from scale_scheduler.api import limits, task_body

TASK: dict[str, Any] = {"name": "t", "command": "true", "cpus": 0.1, "mem": 8}
UNPLACEABLE = {**TASK, "cpus": limits.MAX_CPUS}  # fits no simulated agent: stays queued

BROKEN_BODIES = [
    (b"[5", "not valid JSON"),
    (b"[[", "not valid JSON"),
    (b'{"name": 5,', "not valid JSON"),
    (b'{"zzz":1,', "not valid JSON"),
    (b'{"name": "t", "command": "true", "cpus": 1e309, "mem": 8}', "Field 'cpus' is invalid"),
    (b'[{"name": "t", "command": "true", "cpus": 1, "mem": 1e999}]', "Field 'mem' is invalid"),
    (b'{"zzz": 1, "cpus": 1e309}', "Unexpected fields: zzz"),
    (
        b'{"name": "t", "command": "true", "cpus": 1, "mem": 8, "gpus": 1' + b"0" * 5000 + b"}",
        "Field 'gpus' is invalid",
    ),
]

DEEP = [
    b"[" * 1000,
    b'{"a":' * 1000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"is_paused": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]


async def _answer(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes
) -> tuple[int, str, str]:
    headers = {"Content-Type": "application/json"}
    data = io.BytesIO(body)  # aiohttp warns about large raw bytes
    async with session.request(method, url, data=data, headers=headers) as response:
        return response.status, response.content_type, await response.text()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with running_daemon(tmp_path, agents=2) as daemon, aiohttp.ClientSession() as session:
        await daemon.until(lambda: len(daemon.core.nodes.by_id) == 2)
        yield session, daemon.url


# --- item 3: bodies that gave 500 ----------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), BROKEN_BODIES)
async def test_broken_task_bodies_are_400(
    api: tuple[aiohttp.ClientSession, str], body: bytes, expected: str
) -> None:
    session, url = api
    status, content_type, text = await _answer(session, "POST", url + "/queue/", body)
    assert (status, content_type) == (400, "text/plain"), text
    assert expected in text
    assert len(text) < 500  # names the problem without echoing the body


@pytest.mark.parametrize("path", ["/scheduler/", "/nodes/1/"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"is_paused": 1e309}', "number out of range"),
        (b'{"is_paused": ', "not valid JSON"),
        (b'{"is_paused": "' + b"y" * 100_000 + b'"}', "not the string 'yyyy"),
    ],
)
async def test_broken_patch_bodies_are_400(
    api: tuple[aiohttp.ClientSession, str], path: str, body: bytes, expected: str
) -> None:
    session, url = api
    status, content_type, text = await _answer(session, "PATCH", url + path, body)
    assert (status, content_type) == (400, "text/plain"), text
    assert expected in text
    assert len(text) < 500


# --- item 4: nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("PATCH", "/scheduler/"), ("PATCH", "/nodes/1/"), ("POST", "/queue/")]
)
@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "closed-arrays", "in-a-field"])
async def test_deep_nesting_is_400_on_every_body_route(
    api: tuple[aiohttp.ClientSession, str], method: str, path: str, body: bytes
) -> None:
    session, url = api
    status, content_type, text = await _answer(session, method, url + path, body)
    assert (status, content_type) == (400, "text/plain"), text


@pytest.mark.parametrize("field", ["zzz", "env", "labels"])
@pytest.mark.parametrize(("depth", "expected"), [(300, "index 0"), (5000, "too deeply")])
async def test_deep_nesting_inside_a_task_is_400(
    api: tuple[aiohttp.ClientSession, str], field: str, depth: int, expected: str
) -> None:
    session, url = api
    deep = b"[" * depth + b"]" * depth
    body = b'[{"name": "t", "command": "true", "cpus": 1, "mem": 8, "%s": %s}]' % (
        field.encode(),
        deep,
    )
    status, content_type, text = await _answer(session, "POST", url + "/queue/", body)
    assert (status, content_type) == (400, "text/plain"), text
    assert expected in text


# --- item 13: bounds -----------------------------------------------------------------------------

_BIG = "x" * (1024 * 1024)


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ({"cpus": 2**64}, "cpus", "expected float <= 4096"),
        ({"cpus": 1e308}, "cpus", "expected float <= 4096"),
        ({"cpus": 5e-324}, "cpus", "expected float >= 0.001"),
        ({"cpus": 0.0009}, "cpus", "expected float >= 0.001"),
        ({"mem": 1e-9}, "mem", "expected float >= 1.0"),
        ({"mem": 2**60}, "mem", "expected float <= 16777216"),
        ({"disk": 1e12}, "disk", "expected float <= 16777216"),
        ({"gpus": 65}, "gpus", "expected int <= 64"),
        ({"name": "a\x00b"}, "name", "expected only printable characters"),
        ({"name": "a\x1b[31m"}, "name", "expected only printable characters"),
        ({"name": "a\r\nb"}, "name", "expected only printable characters"),
        ({"name": "a\n"}, "name", "expected only printable characters"),
        ({"name": "n" * 256}, "name", "expected str of length <= 255"),
        ({"env": {"": "x"}}, "env", "expected str of length >= 1 (a key)"),
        ({"env": {"A=B": "x"}}, "env", "the name 'A=B' must be"),
        ({"env": {"A\x00B": "x"}}, "env", "the name 'A\\x00B' must be"),
        ({"env": {"1A": "x"}}, "env", "the name '1A' must be"),
        ({"env": {"A": "a\x00"}}, "env", "the value of 'A' must have no NUL"),
        ({"env": {"A": _BIG}}, "env", "expected str of length <= 4096"),
        ({"env": {f"V{i}": "x" for i in range(101)}}, "env", "expected object of length <= 100"),
        ({"command": "true\x00"}, "command", "expected no NUL character"),
        ({"command": "x" * (64 * 1024 + 1)}, "command", "expected str of length <= 65536"),
        ({"labels": {"k": _BIG}}, "labels", "expected str of length <= 4096"),
        ({"labels": {"k\x00": "v"}}, "labels", "keys and values must have"),
        ({"constraints": {"rack": _BIG}}, "constraints", "expected str of length <= 4096"),
        ({"constraints": {"k" * 256: "v"}}, "constraints", "expected str of length <= 255 (a key)"),
        ({"container": {"image": "busy box"}}, "container.image", "expected printable ASCII"),
        ({"container": {"image": "i" * 1025}}, "container.image", "expected str of length <= 1024"),
    ],
)
async def test_values_beyond_the_limits_are_400_naming_the_field(
    api: tuple[aiohttp.ClientSession, str], extra: dict[str, Any], field: str, reason: str
) -> None:
    session, url = api
    for body, where in (({**TASK, **extra}, ""), ([TASK, {**TASK, **extra}], " (task at index 1")):
        status, content_type, text = await _answer(
            session, "POST", url + "/queue/", json.dumps(body).encode()
        )
        assert (status, content_type) == (400, "text/plain"), text
        assert text.startswith(f"Field {field!r} is invalid{where}")
        assert f": {reason}" in text
        assert len(text) < 600  # a 1 MB value is not echoed


async def test_values_at_the_limits_are_accepted(api: tuple[aiohttp.ClientSession, str]) -> None:
    session, url = api
    task = {
        **TASK,
        "name": "ü" * 255,
        "cpus": limits.MIN_CPUS,
        "mem": limits.MIN_MEM,
        "disk": limits.MAX_MIB,
        "gpus": limits.MAX_GPUS,
        "command": "echo one\necho two\t" + "x" * (limits.MAX_COMMAND - 20),
        "env": {f"V_{i}": "line one\nline two" for i in range(limits.MAX_ENTRIES)},
        "labels": {"k" * 255: "v" * 4096},
        "container": {"image": "registry.example:5000/team/img@sha256:" + "a" * 64},
    }
    status, _, text = await _answer(session, "POST", url + "/queue/", json.dumps(task).encode())
    assert status == 201, text


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("r" * 1025, "at most 1024 characters, not 1025"),
        ("disk\x00", "only printable characters"),
        ("a\nb", "only printable characters"),
    ],
)
async def test_pause_reason_is_bounded_printable_text(
    api: tuple[aiohttp.ClientSession, str], reason: str, expected: str
) -> None:
    session, url = api
    body = json.dumps({"is_paused": True, "pause_reason": reason}).encode()
    status, content_type, text = await _answer(session, "PATCH", url + "/nodes/1/", body)
    assert (status, content_type) == (400, "text/plain"), text
    assert f"Field 'pause_reason' is invalid: expected {expected}" in text
    ok = json.dumps({"is_paused": True, "pause_reason": "r" * 1024}).encode()
    assert (await _answer(session, "PATCH", url + "/nodes/1/", ok))[0] == 200


async def test_other_scripts_digits_are_no_ids_or_pages(
    api: tuple[aiohttp.ClientSession, str],
) -> None:
    session, url = api
    async with session.post(url + "/queue/", json=[UNPLACEABLE] * 33) as response:
        assert response.status == 201
    async with session.delete(url + "/tasks/%D9%A3%D9%A3/") as response:  # Arabic-Indic 33
        assert response.status == 404
    async with session.get(url + "/tasks/33/") as response:
        assert (await response.json())["state"] == "QUEUED"
    for path in ("/nodes/%EF%BC%92/", "/tasks/%EF%BC%92/"):  # fullwidth 2
        async with session.get(url + path) as response:
            assert response.status == 404, path
    for query in ("page=1_000", "page=%D9%A3", "page_size=%EF%BC%92", "page=+1", "page=%201"):
        async with session.get(f"{url}/tasks/?{query}") as response:
            assert response.status == 400, query
            assert "must be an integer" in await response.text()
    async with session.get(url + "/tasks/?page=" + "9" * 5000) as response:
        assert response.status == 400
        assert "must be between 1 and" in await response.text()


# --- item 17: a batch is decoded in chunks ------------------------------------------------------


async def test_a_batch_is_decoded_in_chunks_with_the_loop_free_between() -> None:
    count = 10_000
    body = msgspec.json.encode([TASK] * count)
    decoded = asyncio.create_task(task_body.decode_tasks(body))
    turns = 0
    while not decoded.done():
        turns += 1
        await asyncio.sleep(0)
    tasks, batch = decoded.result()
    assert (len(tasks), batch) == (count, True)
    assert turns >= count // task_body.CHUNK - 1


# --- items 3 and 4 against the real daemon process ---------------------------------------------


@pytest.fixture
def real_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    sim = subprocess.Popen(
        [str(SCRIPT), "sim", "--port", "0", "--agents", "1", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert sim.stdout is not None
    master = json.loads(sim.stdout.readline())["leader"].rstrip("/")
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        api={"host": "127.0.0.1", "port": port},
        state={"path": str(tmp_path / "state.db")},
        mesos={"master": master},
    )
    process = DaemonProcess(config, port, tmp_path / "daemon.log")
    try:
        yield process
    finally:
        process.stop_quietly()
        sim.terminate()
        sim.wait(10)
        sim.stdout.close()


async def test_real_daemon_answers_broken_and_deep_bodies_400(real_daemon: DaemonProcess) -> None:
    real_daemon.start()
    await real_daemon.wait_ready()
    async with aiohttp.ClientSession() as session:
        for _ in range(200):  # the node appears with the simulated agent's first offer
            async with session.get(real_daemon.url + "/nodes/1/") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.05)  # poll interval
        else:
            raise AssertionError("no node 1: " + real_daemon.logs())
        cases = [("POST", "/queue/", body) for body, _ in BROKEN_BODIES]
        cases += [
            (method, path, body)
            for body in DEEP
            for method, path in (
                ("PATCH", "/scheduler/"),
                ("PATCH", "/nodes/1/"),
                ("POST", "/queue/"),
            )
        ]
        for method, path, body in cases:
            status, content_type, text = await _answer(
                session, method, real_daemon.url + path, body
            )
            assert (status, content_type) == (400, "text/plain"), (method, path, body[:30], text)
    assert "request_failed" not in real_daemon.logs()
    assert "Traceback" not in real_daemon.logs()
