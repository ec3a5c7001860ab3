"""SUBSCRIBE, heartbeats, resubscription, failover timeout and the HTTP error answers."""

from __future__ import annotations

import base64

import aiohttp
import msgspec
import pytest
from sim_client import FAST, SchedulerClient, framework_info

from scale_scheduler.simulator import SimulatedCluster


async def test_subscribed_comes_first_with_stream_id_and_heartbeats(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    c = SchedulerClient(session, sim.url)
    body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info()}}
    resp = await session.post(
        sim.url + "/api/v1/scheduler",
        data=msgspec.json.encode(body),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert resp.status == 200
    assert resp.headers["Mesos-Stream-Id"]
    assert resp.headers["Content-Type"].startswith("application/json")
    length = int(await resp.content.readline())
    first = msgspec.json.decode(await resp.content.readexactly(length))
    assert first["type"] == "SUBSCRIBED"
    sub = first["subscribed"]
    assert sub["heartbeat_interval_seconds"] == FAST["heartbeat_interval"]
    assert sub["framework_id"]["value"]
    info = sub["master_info"]
    assert info["port"] == sim.masters[0].port
    assert info["address"] == {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": info["port"]}
    assert info["ip"] == 16777343  # 127.0.0.1 in network order, as Mesos encodes it
    resp.close()
    await c.close()


async def test_heartbeats_arrive_at_the_interval(client: SchedulerClient) -> None:
    await client.next_event("OFFERS")
    before = client.heartbeats
    with pytest.raises(TimeoutError):
        await client.next_event("NEVER", timeout=0.75)
    assert client.heartbeats - before >= 2


async def test_new_frameworks_get_fresh_ids(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    a, b = SchedulerClient(session, sim.url), SchedulerClient(session, sim.url)
    assert await a.subscribe() == 200
    assert await b.subscribe() == 200
    assert a.framework_id != b.framework_id
    assert {f.id for f in sim.frameworks()} == {a.framework_id, b.framework_id}
    await a.close()
    await b.close()


async def test_resubscribe_keeps_tasks_and_closes_the_older_stream(
    sim: SimulatedCluster, session: aiohttp.ClientSession, client: SchedulerClient
) -> None:
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "keep-me", labels={"sim.outcome": "RUNNING"})
    await client.ack(await client.update("TASK_STARTING"))
    await client.ack(await client.update("TASK_RUNNING"))

    again = SchedulerClient(session, sim.url)
    info = framework_info(id={"value": client.framework_id})
    assert await again.subscribe(info) == 200
    assert again.framework_id == client.framework_id
    error = await client.next_event("ERROR")
    assert error["error"]["message"] == "Framework failed over"
    with pytest.raises(EOFError):
        await client.next_event("NEVER", timeout=2)
    assert sim.task("keep-me") is not None
    assert sim.task("keep-me").state == "TASK_RUNNING"
    # The old stream id is no longer valid; the new one is.
    status, text = await client.call("REVIVE", {})
    assert status == 400
    assert "didn't match the stream ID" in text
    assert (await again.call("REVIVE", {}))[0] == 202
    await again.close()


async def test_the_record_keeps_each_subscription_and_the_calls_accepted_on_it(
    sim: SimulatedCluster, session: aiohttp.ClientSession, client: SchedulerClient
) -> None:
    """One subscription ends where the next of the same framework begins; a call on the old
    stream id is refused and not recorded, so no call of an old subscription counts after the
    new one began; launches are logged with their time."""
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "logged")
    again = SchedulerClient(session, sim.url)
    assert await again.subscribe(framework_info(id={"value": client.framework_id})) == 200
    assert (await client.call("REVIVE", {}))[0] == 400  # the old stream: refused
    assert (await again.call("REVIVE", {}))[0] == 202
    old, new = sim.record.subscriptions
    assert (old.framework_id, new.framework_id) == (client.framework_id, client.framework_id)
    assert old.ended is not None
    assert old.ended <= new.began
    assert new.ended is None
    assert old.calls == 1  # the ACCEPT
    assert old.last_call is not None
    assert old.last_call <= new.began
    assert new.calls == 1
    assert new.first_call is not None
    assert new.first_call >= new.began
    assert sim.record.overlapping_subscriptions() == []
    assert sim.record.calls_after_takeover() == []
    assert [(task_id, host) for _, task_id, host in sim.record.launch_log] == [
        ("logged", offer["hostname"])
    ]
    # A subscription left open while another takes over would be an overlap.
    old.ended = None
    assert sim.record.overlapping_subscriptions() == [(old, new)]
    old.last_call = new.began + 1
    assert sim.record.calls_after_takeover() == [(old, new)]
    await again.close()


async def test_failover_timeout_removes_framework_and_kills_tasks(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    c = SchedulerClient(session, sim.url)
    assert await c.subscribe(framework_info(failover_timeout=0.3)) == 200
    offer = (await c.next_event("OFFERS"))["offers"]["offers"][0]
    await c.launch(offer, "doomed", labels={"sim.outcome": "RUNNING"})
    await c.update("TASK_STARTING")
    fid = c.framework_id
    await c.close()
    await sim.wait_until(lambda: not sim.framework(fid).connected, timeout=3)
    assert sim.task("doomed") is not None  # still within the failover timeout
    await sim.wait_until(lambda: sim.framework(fid) is None, timeout=3)
    assert sim.task("doomed") is None
    back = SchedulerClient(session, sim.url)
    assert await back.subscribe(framework_info(id={"value": fid})) == 200
    error = await back.next_event("ERROR")
    assert error["error"]["message"] == "Framework has been removed"
    await back.close()


async def test_disconnected_framework_gets_403_within_failover_timeout(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    c = SchedulerClient(session, sim.url)
    assert await c.subscribe() == 200
    await c.close()
    await sim.wait_until(lambda: not sim.framework(c.framework_id).connected, timeout=3)
    status, text = await c.call("REVIVE", {})
    assert (status, text) == (403, "Framework is not subscribed")


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, **headers: str
) -> tuple[int, str, str]:
    async with session.post(url + "/api/v1/scheduler", data=body, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (b'{"type":"SUBSCRIBE"}', {"Content-Type": "text/html"}, 415, "Content-Type"),
        (b"{not json", {"Content-Type": "application/json"}, 400, "Failed to parse body"),
        (b"[1]", {"Content-Type": "application/json"}, 400, "Call protobuf"),
        (b'{"type":"FLY"}', {"Content-Type": "application/json"}, 400, "unknown call type"),
        (
            b'{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"x"}}}',
            {"Content-Type": "application/json"},
            400,
            "framework_info.user",
        ),
        (b'{"type":"REVIVE"}', {"Content-Type": "application/json"}, 400, "framework_id"),
        (
            b'{"type":"REVIVE","framework_id":{"value":"nope"}}',
            {"Content-Type": "application/json"},
            400,
            "Framework cannot be found",
        ),
        (
            b'{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}',
            {"Content-Type": "application/json", "Accept": "text/html"},
            406,
            "Accept",
        ),
    ],
)
async def test_bad_requests_are_answered_like_mesos(
    sim: SimulatedCluster,
    session: aiohttp.ClientSession,
    body: bytes,
    headers: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    got, ctype, text = await _post(session, sim.url, body, **headers)
    assert got == status
    assert ctype.startswith("text/plain")
    assert fragment in text


async def test_missing_content_type_is_400(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        sim.url + "/api/v1/scheduler", data=b"{}", skip_auto_headers=["Content-Type"]
    ) as resp:
        assert resp.status == 400
        assert "Content-Type" in await resp.text()


async def test_calls_need_the_stream_id(client: SchedulerClient) -> None:
    client.stream_id = None
    status, text = await client.call("REVIVE", {})
    assert status == 400
    assert "Mesos-Stream-Id" in text


async def test_basic_auth(session: aiohttp.ClientSession) -> None:
    async with SimulatedCluster(**FAST, credentials=(("fw", "s3cret"),)) as sim:
        c = SchedulerClient(session, sim.url)
        assert await c.subscribe(framework_info(principal="fw")) == 401
        assert c.response is not None
        assert c.response.headers["WWW-Authenticate"].startswith("Basic")
        bad = "Basic " + base64.b64encode(b"fw:wrong").decode()
        assert await c.subscribe(framework_info(principal="fw"), Authorization=bad) == 401
        good = "Basic " + base64.b64encode(b"fw:s3cret").decode()
        assert await c.subscribe(framework_info(principal="other"), Authorization=good) == 403
        assert await c.subscribe(framework_info(principal="fw"), Authorization=good) == 200
        assert (await c.call("REVIVE", {}))[0] == 401
        assert (await c.call("REVIVE", {}, Authorization=good))[0] == 202
        await c.close()


async def test_record_keeps_calls_and_framework_infos(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    await client.call("REVIVE", {})
    await client.call("SUPPRESS", {})
    await client.call("REVIVE", {})
    assert sim.record.calls["REVIVE"] == 2
    assert sim.record.calls["SUPPRESS"] == 1
    assert sim.record.calls["SUBSCRIBE"] == 1
    assert sim.record.framework_infos == [framework_info()]
    assert sim.record.teardown_received is False


async def test_teardown_kills_tasks_closes_stream_and_is_recorded(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "t", labels={"sim.outcome": "RUNNING"})
    await client.update("TASK_STARTING")
    assert (await client.call("TEARDOWN"))[0] == 202
    with pytest.raises(EOFError):
        await client.next_event("NEVER", timeout=2)
    assert sim.record.teardown_received
    assert sim.task("t") is None
    assert sim.framework(client.framework_id) is None
    assert all(a.allocated.is_empty() for a in sim.agents)


@pytest.mark.parametrize("call_type", ["ACCEPT", "DECLINE", "KILL", "ACKNOWLEDGE", "RECONCILE"])
async def test_calls_without_their_payload_are_400(client: SchedulerClient, call_type: str) -> None:
    status, text = await client.call(call_type)
    assert status == 400
    assert f"'{call_type.lower()}'" in text
