"""Fault injection from code, through `/sim/fault`, and the command line (subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import msgspec
import pytest
from daemonkit import eventually
from sim_client import SchedulerClient

from scale_scheduler.simulator import RAW_KINDS, SimulatedCluster
from scale_scheduler.simulator.cli import fault_parser, run_parser
from scale_scheduler.simulator.faults import raw_payload


async def test_stop_and_resume_heartbeats(sim: SimulatedCluster, client: SchedulerClient) -> None:
    assert sim.stop_heartbeats() == 1
    # A marker behind any heartbeat already queued: once it is read, so are they.
    sim.inject("unknown_event")
    await client.next_event("SIM_UNKNOWN")
    before = client.heartbeats
    await asyncio.sleep(0.6)  # nothing may happen: three heartbeat intervals without one
    assert client.heartbeats == before
    sim.resume_heartbeats(client.framework_id)
    await sim.wait_until(lambda: client.heartbeats > before, timeout=2)


async def test_hang_stream_writes_nothing_until_released(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    await client.next_event("OFFERS")
    sim.hang_stream()
    (sub,) = sim.subscriptions()
    await eventually(lambda: client.events_read == sub.events_sent)  # what left before is read
    before = client.heartbeats
    sim.rescind_offers()
    with pytest.raises(TimeoutError):
        await client.next_event("RESCIND", timeout=0.6)
    assert client.heartbeats == before
    sim.hang_stream(hung=False)
    assert (await client.next_event("RESCIND"))["type"] == "RESCIND"


@pytest.mark.parametrize("abort", [False, True])
async def test_close_stream_disconnects_framework(
    sim: SimulatedCluster, client: SchedulerClient, abort: bool
) -> None:
    assert sim.close_stream(abort=abort) == 1
    with pytest.raises(EOFError):
        await client.next_event("NEVER", timeout=3)
    await sim.wait_until(lambda: not sim.framework().connected, timeout=3)


async def test_delay_and_fail_calls(sim: SimulatedCluster, client: SchedulerClient) -> None:
    sim.fail_calls(503, call_type="REVIVE", count=2)
    assert (await client.call("REVIVE", {}))[0] == 503
    assert (await client.call("SUPPRESS", {}))[0] == 202
    assert (await client.call("REVIVE", {}))[0] == 503
    assert (await client.call("REVIVE", {}))[0] == 202
    sim.delay_calls(0.3, call_type="SUPPRESS")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await client.call("SUPPRESS", {}))[0] == 202
    assert loop.time() - start >= 0.3
    sim.clear_call_faults()
    assert sim.faults.rules == []


async def test_step_down_without_rejoin_means_no_leader(
    sim: SimulatedCluster, session: aiohttp.ClientSession, client: SchedulerClient
) -> None:
    assert await sim.step_down(rejoin=False) == 0
    assert sim.leader is None
    with pytest.raises(EOFError):
        await client.next_event("NEVER", timeout=2)
    async with session.post(sim.url + "/api/v1/scheduler", json={"type": "SUBSCRIBE"}) as resp:
        assert resp.status == 503
        assert await resp.text() == "No leader elected"
    assert await sim.rejoin() == [0]
    assert sim.leader is sim.masters[0]


def _frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        head, _, rest = data.partition(b"\n")
        n = int(head)
        out.append(rest[:n])
        data = rest[n:]
    return out


def test_raw_payloads_are_broken_in_their_named_way() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        _frames(raw_payload("bad_length"))
    (invalid,) = _frames(raw_payload("invalid_json"))
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(invalid)
    (unknown,) = _frames(raw_payload("unknown_event"))
    assert msgspec.json.decode(unknown)["type"] == "SIM_UNKNOWN"
    (big,) = _frames(raw_payload("oversize", size=1000))
    assert len(big) > 1000
    assert raw_payload("oversize_header", size=123) == b"123\n"
    with pytest.raises(ValueError, match="unknown raw payload"):
        raw_payload("nope")


async def test_inject_reaches_the_stream(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}
    resp = await session.post(
        sim.url + "/api/v1/scheduler",
        data=msgspec.json.encode(body),
        headers={"Content-Type": "application/json"},
    )
    n = int(await resp.content.readline())
    await resp.content.readexactly(n)
    assert sim.inject("unknown_event") == 1
    while True:
        n = int(await resp.content.readline())
        event = msgspec.json.decode(await resp.content.readexactly(n))
        if event["type"] == "SIM_UNKNOWN":
            break
    assert sim.inject_raw(b"garbage\n") == 1
    while True:
        line = await resp.content.readline()
        if line == b"garbage\n":
            break
        await resp.content.readexactly(int(line))
    resp.close()


async def test_unknown_resource_offer(sim: SimulatedCluster, client: SchedulerClient) -> None:
    await client.next_event("OFFERS")
    assert sim.inject("unknown_resource_offer") == 1
    while True:
        offers = (await client.next_event("OFFERS"))["offers"]["offers"]
        names = {r["name"] for o in offers for r in o["resources"]}
        if "fpgas" in names:
            break
    assert "licenses" in names
    assert set(RAW_KINDS) >= {"bad_length", "invalid_json", "unknown_event", "oversize"}


async def test_admin_endpoint(
    sim: SimulatedCluster, session: aiohttp.ClientSession, client: SchedulerClient
) -> None:
    async with session.post(sim.url + "/sim/fault", json={"action": "add_agent", "cpus": 2}) as r:
        assert r.status == 200
        added = await r.json()
    assert sim.pool.find(added["agent_id"]) is not None
    async with session.post(sim.url + "/sim/fault", json={"action": "fly"}) as r:
        assert r.status == 400
    async with session.get(sim.url + "/sim/state") as r:
        state = await r.json()
    assert state["agents"] == 4
    assert state["frameworks"][0]["id"] == client.framework_id
    async with session.get(sim.url + "/sim/record") as r:
        assert (await r.json())["calls"]["SUBSCRIBE"] == 1


def _run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scale_scheduler.simulator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_cli_runs_a_cluster_and_takes_faults(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scale_scheduler.simulator",
        "--port",
        "0",
        "--masters",
        "2",
        "--agents",
        "2",
        "--cpus",
        "3",
        "--attributes",
        "rack:r{i}",
        "--heartbeat-interval",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        urls = json.loads(line)["masters"]
        assert len(urls) == 2
        done = await asyncio.to_thread(
            _run_cli, "fault", "--url", urls[1], "remove-agent", "sim-agent-1"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"removed": True}
        async with session.post(urls[0] + "/api/v1", json={"type": "GET_AGENTS"}) as resp:
            agents = (await resp.json())["get_agents"]["agents"]
        assert [a["agent_info"]["hostname"] for a in agents] == ["sim-agent-0"]
        assert agents[0]["agent_info"]["attributes"][0]["text"]["value"] == "r0"
        assert agents[0]["total_resources"][0]["scalar"]["value"] == 3.0
        async with session.post(
            urls[1] + "/api/v1/scheduler", json={"type": "SUBSCRIBE"}, allow_redirects=False
        ) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == "//" + urls[0].removeprefix("http://") + (
                "/api/v1/scheduler"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_cli_rejects_bad_arguments() -> None:
    done = _run_cli("--ports", "9-1")
    assert done.returncode == 2
    assert "bad port range" in done.stderr
    done = _run_cli("fault", "--url", "http://127.0.0.1:9", "rescind-offers")
    assert done.returncode == 2
    assert "cannot reach" in done.stderr


def test_readme_documents_every_option_and_fault() -> None:
    readme = (Path(__file__).parents[2] / "simulator" / "README.md").read_text()
    options = [o for a in run_parser()._actions for o in a.option_strings if o.startswith("--")]
    missing = [o for o in options if o != "--help" and f"`{o}`" not in readme]
    assert missing == []
    sub = next(a for a in fault_parser()._actions if a.dest == "action")
    undocumented = [name for name in sub.choices if f"`{name}" not in readme]
    assert undocumented == []


def test_the_cli_process_keeps_the_cyclic_gc_off_the_hot_path() -> None:
    # In a child: freezing and re-tuning the GC of the test process would leak into others.
    code = (
        "import gc; from scale_scheduler.simulator.cli import GC_THRESHOLDS, _tune_gc; "
        "_tune_gc(); print(gc.get_threshold() == GC_THRESHOLDS, gc.get_freeze_count() > 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert done.stdout.split() == ["True", "True"]
