"""The lean scheduler-call path: same answers as aiohttp's, and a clean hand-off to it."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from sim_client import SchedulerClient

from scale_scheduler.simulator import SimulatedCluster


def _aiohttp_connections(sim: SimulatedCluster) -> int:
    server = sim.runners[0].server
    assert server is not None
    return len(server.connections)


def _request(client: SchedulerClient, call: dict[str, Any], **headers: str) -> bytes:
    body = msgspec.json.encode({"framework_id": {"value": client.framework_id}, **call})
    lines = [
        "POST /api/v1/scheduler HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Mesos-Stream-Id: {client.stream_id}",
        *(f"{k}: {v}" for k, v in headers.items()),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _connect(sim: SimulatedCluster) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    leader = sim.leader
    assert leader is not None
    return await asyncio.open_connection("127.0.0.1", leader.port)


async def test_calls_are_answered_without_aiohttp(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    reader, writer = await _connect(sim)
    try:
        for _ in range(3):
            writer.write(_request(client, {"type": "REVIVE", "revive": {}}))
            status, _, body = await _read_response(reader)
            assert (status, body) == (202, b"")
        assert sim.record.calls["REVIVE"] == 3
        # Only the SUBSCRIBE stream went through aiohttp.
        assert _aiohttp_connections(sim) == 1
    finally:
        writer.close()


async def test_call_errors_are_text_plain_like_mesos(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    reader, writer = await _connect(sim)
    try:
        assert client.stream_id is not None
        writer.write(
            _request(client, {"type": "KILL", "kill": {}}).replace(
                client.stream_id.encode(), b"not-the-stream"
            )
        )
        status, headers, body = await _read_response(reader)
        assert status == 400
        assert headers["content-type"].startswith("text/plain")
        assert b"didn't match the stream ID" in body
        writer.write(_request(client, {"type": "KILL", "kill": {}}))
        status, headers, body = await _read_response(reader)
        assert (status, body) == (400, b"Failed to validate scheduler::Call: Expecting 'task_id'")
        assert _aiohttp_connections(sim) == 1
    finally:
        writer.close()


async def test_pipelined_and_split_requests(sim: SimulatedCluster, client: SchedulerClient) -> None:
    reader, writer = await _connect(sim)
    try:
        revive = _request(client, {"type": "REVIVE", "revive": {}})
        writer.write(revive * 3)
        for _ in range(3):
            assert (await _read_response(reader))[0] == 202
        for i in range(len(revive)):  # one byte at a time
            writer.write(revive[i : i + 1])
            await writer.drain()
        assert (await _read_response(reader))[0] == 202
        assert sim.record.calls["REVIVE"] == 4
    finally:
        writer.close()


async def test_other_requests_hand_the_connection_to_aiohttp(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    reader, writer = await _connect(sim)
    try:
        writer.write(_request(client, {"type": "REVIVE", "revive": {}}))
        assert (await _read_response(reader))[0] == 202
        # A lean call and a GET in one write: the call is answered, the GET goes to aiohttp.
        writer.write(
            _request(client, {"type": "REVIVE", "revive": {}})
            + b"GET /sim/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert (await _read_response(reader))[0] == 202
        status, _, body = await _read_response(reader)
        assert status == 200
        assert msgspec.json.decode(body)["agents"] == len(sim.agents)
        assert _aiohttp_connections(sim) == 2
        # Bad JSON is left to aiohttp's view, which answers as before.
        writer.write(
            b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 3\r\n\r\n{x}"
        )
        status, _, body = await _read_response(reader)
        assert status == 400
        assert body.startswith(b"Failed to parse body into JSON")
    finally:
        writer.close()


async def test_call_faults_still_apply(sim: SimulatedCluster, client: SchedulerClient) -> None:
    sim.fail_calls(503, call_type="REVIVE", count=1, message="busy")
    reader, writer = await _connect(sim)
    try:
        writer.write(_request(client, {"type": "REVIVE", "revive": {}}))
        status, _, body = await _read_response(reader)
        assert (status, body) == (503, b"busy")
        assert sim.record.calls["REVIVE"] == 1
        writer.write(_request(client, {"type": "REVIVE", "revive": {}}))
        assert (await _read_response(reader))[0] == 202
    finally:
        writer.close()


async def test_connection_close_request_is_left_to_aiohttp(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    reader, writer = await _connect(sim)
    try:
        writer.write(_request(client, {"type": "REVIVE", "revive": {}}, Connection="close"))
        assert (await _read_response(reader))[0] == 202
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the answer
    finally:
        writer.close()


async def test_stop_closes_lean_connections(client: SchedulerClient) -> None:
    async with SimulatedCluster(seed=3) as sim:
        c = SchedulerClient(client.session, sim.url)
        assert await c.subscribe() == 200
        reader, writer = await _connect(sim)
        writer.write(_request(c, {"type": "REVIVE", "revive": {}}))
        assert (await _read_response(reader))[0] == 202
        await c.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
