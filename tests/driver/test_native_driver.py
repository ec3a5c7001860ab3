"""The native driver against small fake masters: subscription, failover, calls, stream trouble."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
import structlog
from clockkit import ManualClock
from driver_fakes import (
    CountingShare,
    FakeMaster,
    MakeDriver,
    MemoryIdStore,
    RecordingHandler,
    Relay,
    driver_config,
    eventually,
    gave_up,
    record,
)

from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    ConnectionState,
    DriverError,
    Launch,
    NotConnectedError,
)
from scale_scheduler.daemon.mesos.master_detector import StaticMasterDetector
from scale_scheduler.daemon.mesos.mesos_types import Resource, Scalar, TaskInfo, Value
from scale_scheduler.daemon.mesos.native_driver import DriverSettings, create_native_driver
from scale_scheduler.daemon.service.config import ApiConfig, Config, MesosConfig

OFFER = {
    "id": {"value": "o1"},
    "framework_id": {"value": "x"},
    "agent_id": {"value": "a1"},
    "hostname": "agent1",
    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}}],
}


async def subscribed(driver: object, handler: RecordingHandler, count: int = 1) -> None:
    await eventually(lambda: len(handler.subscriptions) >= count)


# -- registration and the framework id ----------------------------------------------------------


async def test_first_registration_saves_the_id_before_anything_is_dispatched(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    store = MemoryIdStore(order=handler.order)
    store.gate = asyncio.Event()
    driver = make_driver(master.url, store=store)
    await driver.start(handler)
    await master.subscribed.wait()
    await master.push({"type": "OFFERS", "offers": {"offers": [OFFER]}})
    await asyncio.sleep(0.1)  # a window in which nothing may happen: a dispatch would show
    assert handler.order == []  # nothing dispatched while the commit is pending
    assert driver.status.state is not ConnectionState.SUBSCRIBED
    store.gate.set()
    await eventually(lambda: handler.offers)
    assert handler.order == ["saved", "subscribed", "offers"]
    assert store.saved == ["m1-fw-1"]
    assert driver.status.framework_id == "m1-fw-1"
    sub = handler.subscriptions[0]
    assert sub.framework_id == "m1-fw-1"
    assert sub.resubscribed is False
    assert sub.heartbeat_interval_seconds == master.heartbeat
    first = master.subscribes[0]
    assert "framework_id" not in first
    assert "id" not in first["subscribe"]["framework_info"]


async def test_restart_resubscribes_with_the_stored_id(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    store = MemoryIdStore()
    first = make_driver(master.url, store=store)
    await first.start(RecordingHandler())
    await eventually(lambda: store.saved)
    await first.stop()

    handler = RecordingHandler()
    second = make_driver(master.url, store=store, framework_id=store.saved[0])
    await second.start(handler)
    await subscribed(second, handler)
    body = master.subscribes[-1]
    assert body["framework_id"] == {"value": "m1-fw-1"}
    assert body["subscribe"]["framework_info"]["id"] == {"value": "m1-fw-1"}
    assert handler.subscriptions[0].resubscribed is True
    assert store.saved == ["m1-fw-1"]  # not saved again, no new framework
    assert list(master.frameworks) == ["m1-fw-1"]


async def test_a_driver_built_before_the_first_subscription_takes_the_id_stored_since(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    """A standby builds its driver before any leader subscribed; when it leads later, it
    subscribes with the id the first leader stored meanwhile, not as a new framework."""
    store = MemoryIdStore()
    standby = make_driver(master.url, store=store)  # built with no id
    first = make_driver(master.url, store=store)
    await first.start(RecordingHandler())
    await eventually(lambda: store.saved)
    await first.stop()
    handler = RecordingHandler()
    await standby.start(handler)
    await subscribed(standby, handler)
    assert master.subscribes[-1]["framework_id"] == {"value": "m1-fw-1"}
    assert handler.subscriptions[0].resubscribed is True
    assert list(master.frameworks) == ["m1-fw-1"]


async def test_stream_end_resubscribes_with_the_same_id(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    await master.close_streams()
    await subscribed(driver, handler, 2)
    assert master.subscribes[1]["framework_id"] == {"value": "m1-fw-1"}
    assert handler.disconnects == ["the master closed the event stream"]
    assert driver.status.subscriptions == 2
    assert driver.status.reconnects == 1
    assert driver.status.subscribed


async def test_no_resubscription_once_this_instance_no_longer_leads(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    """``may_subscribe`` is asked before every SUBSCRIBE: a deposed leader whose stream ends
    does not subscribe again (it would fail the new leader's subscription over)."""
    leads = [True]
    handler = RecordingHandler()
    driver = make_driver(master.url, may_subscribe=lambda: leads[0])
    await driver.start(handler)
    await subscribed(driver, handler)
    leads[0] = False
    await master.close_streams()
    await eventually(lambda: "does not lead" in (driver.status.last_error or ""))
    assert len(master.subscribes) == 1
    assert not driver.status.subscribed


async def test_failed_save_keeps_the_id_and_retries(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    store = MemoryIdStore()
    store.fail = True
    driver = make_driver(master.url, store=store)
    await driver.start(handler)
    await eventually(lambda: len(master.subscribes) >= 2)
    assert handler.subscriptions == []
    assert "cannot store the framework id" in (driver.status.last_error or "")
    assert master.subscribes[1]["framework_id"] == {"value": "m1-fw-1"}
    store.fail = False
    await subscribed(driver, handler)
    assert store.saved == ["m1-fw-1"]
    assert list(master.frameworks) == ["m1-fw-1"]


async def test_a_different_framework_id_is_refused(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    master.reported_id = "someone-else"
    handler = RecordingHandler()
    driver = make_driver(master.url, framework_id="mine")
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: handler.errors)
        await eventually(lambda: gave_up(logs))  # the resubscribe loop is over: no new SUBSCRIBE
    assert "someone-else" in handler.errors[0]
    assert handler.subscriptions == []
    assert driver.status.framework_id == "mine"
    assert len(master.subscribes) == 1


# -- finding the master -------------------------------------------------------------------------


async def test_redirect_to_the_leader_is_followed(
    master: FakeMaster, second_master: FakeMaster, make_driver: MakeDriver
) -> None:
    master.redirect_to = f"127.0.0.1:{second_master.port}"
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    assert len(master.subscribes) == 1
    assert len(second_master.subscribes) == 1
    assert driver.status.master_hostname == "m2.example"
    assert driver.status.master_port == second_master.port
    await driver.revive(["*"])
    assert [c["type"] for c in second_master.calls] == ["REVIVE"]
    assert master.calls == []


async def test_503_is_retried_with_backoff(master: FakeMaster, make_driver: MakeDriver) -> None:
    master.statuses = [503, 503]
    handler = RecordingHandler()
    driver = make_driver(master.url)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await subscribed(driver, handler)
    assert len(master.subscribes) == 3
    scheduled = [e for e in logs if e["event"] == "mesos_resubscribe_scheduled"]
    assert len(scheduled) == 2
    assert all(0 < e["delay"] <= 0.2 for e in scheduled)
    assert driver.status.last_error is None


async def test_refused_connections_are_retried_until_the_master_appears(
    unused_port: int, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(f"http://127.0.0.1:{unused_port}")
    await driver.start(handler)
    await eventually(lambda: driver.status.last_error is not None)
    assert "cannot reach" in (driver.status.last_error or "")
    assert driver.status.master_online is False
    assert driver.status.state is not ConnectionState.SUBSCRIBED
    late = FakeMaster(name="late")
    await late.start(port=unused_port)
    try:
        await subscribed(driver, handler)
        assert driver.status.master_online is True
    finally:
        await driver.stop()
        await late.close()


async def test_a_list_of_masters_is_tried_in_turn(
    master: FakeMaster, unused_port: int, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(f"127.0.0.1:{unused_port}", master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    assert driver.status.master_port == master.port


async def test_redirect_loops_are_cut_short(master: FakeMaster, make_driver: MakeDriver) -> None:
    master.redirect_to = f"127.0.0.1:{master.port}"
    driver = make_driver(master.url)
    await driver.start(RecordingHandler())
    await eventually(lambda: "redirects" in (driver.status.last_error or ""))
    assert "more than 5 redirects" in (driver.status.last_error or "")


# -- liveness -----------------------------------------------------------------------------------


async def test_a_master_that_never_answers_subscribe_is_given_up_on(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    master.hang_subscribes = 1
    handler = RecordingHandler()
    clock = ManualClock()
    settings = DriverSettings(request_timeout=0.3, backoff_initial=0.05, backoff_max=0.2)
    driver = make_driver(master.url, settings=settings, clock=clock)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: len(master.subscribes) == 1)  # sent, and never answered
        clock.advance(0.25)
        assert driver.status.last_error is None
        clock.advance(0.05)
        assert driver.status.last_error == "no event from the master for 0.3s"
        await subscribed(driver, handler)
    assert len(master.subscribes) == 2
    interrupted = [e for e in logs if e["event"] == "mesos_stream_interrupted"]
    assert interrupted[0]["reason"] == "no event from the master for 0.3s"


async def test_missed_heartbeats_close_the_stream_and_resubscribe(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    master.heartbeat = 0.125  # the limit: 5 intervals of the watchdog's clock
    master.send_heartbeats = False
    handler = RecordingHandler()
    clock = ManualClock()
    driver = make_driver(master.url, clock=clock)
    await driver.start(handler)
    await subscribed(driver, handler)
    clock.advance(0.5)
    assert driver.status.last_error is None
    clock.advance(0.125)
    assert driver.status.last_error == "no event from the master for 0.625s"
    await eventually(lambda: handler.disconnects)
    assert "no event from the master for 0.625s" in handler.disconnects[0]
    await subscribed(driver, handler, 2)
    assert driver.status.reconnects == 1


async def test_heartbeats_keep_the_stream_open(master: FakeMaster, make_driver: MakeDriver) -> None:
    master.heartbeat = 0.125  # the limit: 0.625 s of the watchdog's clock
    master.send_heartbeats = False  # the test sends them, one per step
    handler = RecordingHandler()
    clock = ManualClock()
    records = CountingShare()
    driver = make_driver(master.url, clock=clock, loop_share=records)
    await driver.start(handler)
    await subscribed(driver, handler)
    for _ in range(10):  # 5 s in all, 8 limits
        clock.advance(0.5)
        seen = records.records
        await master.push({"type": "HEARTBEAT"})
        await eventually(lambda seen=seen: records.records > seen)
    assert driver.status.last_error is None
    assert handler.disconnects == []
    assert len(master.subscribes) == 1


async def test_a_call_answered_403_triggers_a_resubscribe(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    master.call_status = 403
    with pytest.raises(DriverError, match="403"):
        await driver.revive([])
    master.call_status = 202
    await subscribed(driver, handler, 2)
    assert handler.disconnects == ["REVIVE answered 403"]
    await driver.revive([])


# -- errors from the master ---------------------------------------------------------------------


async def test_error_event_reaches_the_handler_and_stops_subscribing(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await subscribed(driver, handler)
        await master.push({"type": "ERROR", "error": {"message": "Framework has been removed"}})
        await eventually(lambda: handler.errors)
        await eventually(lambda: gave_up(logs))  # the resubscribe loop is over: no new SUBSCRIBE
    assert handler.errors == ["Framework has been removed"]
    assert handler.order == ["subscribed", "error", "disconnected"]
    assert len(master.subscribes) == 1
    assert driver.status.state is ConnectionState.DISCONNECTED
    assert "Framework has been removed" in (driver.status.last_error or "")
    events = [e for e in logs if e["event"] == "mesos_error_event"]
    assert events[0]["message"] == "Framework has been removed"
    # The driver records it at info: the daemon logs the one error line (daemon_fatal).
    assert [e["event"] for e in logs if e["log_level"] == "error"] == []
    with pytest.raises(NotConnectedError):
        await driver.revive([])


async def test_basic_auth_on_every_request(
    master: FakeMaster, make_driver: MakeDriver, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    expected = "Basic " + base64.b64encode(b"me:s3cret").decode()
    master.required_auth = expected
    config = driver_config(principal="me", secret_file=str(secret))
    handler = RecordingHandler()
    driver = make_driver(master.url, config=config)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await subscribed(driver, handler)
        await driver.suppress([])
    assert master.subscribe_headers[0]["Authorization"] == expected
    assert master.call_headers[0]["Authorization"] == expected
    assert master.subscribes[0]["subscribe"]["framework_info"]["principal"] == "me"
    assert "s3cret" not in repr(logs)


async def test_401_is_reported_clearly(
    master: FakeMaster, make_driver: MakeDriver, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("wrong", encoding="utf-8")
    master.required_auth = "Basic nope"
    config = driver_config(principal="me", secret_file=str(secret))
    handler = RecordingHandler()
    driver = make_driver(master.url, config=config)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: driver.status.last_error is not None)
    assert "401" in (driver.status.last_error or "")
    assert "mesos.secret_file" in (driver.status.last_error or "")
    unauthorized = [e for e in logs if e["event"] == "mesos_unauthorized"]
    assert unauthorized[0]["log_level"] == "error"
    assert unauthorized[0]["principal"] == "me"
    assert "wrong" not in repr(logs)
    assert driver.status.state is not ConnectionState.SUBSCRIBED


async def test_unreadable_secret_file_fails_start(make_driver: MakeDriver, tmp_path: Path) -> None:
    config = driver_config(principal="me", secret_file=str(tmp_path / "missing"))
    driver = make_driver("http://127.0.0.1:1", config=config)
    with pytest.raises(Exception, match=r"mesos\.secret_file"):
        await driver.start(RecordingHandler())
    assert "mesos.secret_file" in (driver.status.last_error or "")


# -- shutdown -----------------------------------------------------------------------------------


async def test_stop_never_sends_teardown(master: FakeMaster, make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    await driver.stop()
    assert master.calls_of("TEARDOWN") == []
    assert driver.status.state is ConnectionState.STOPPED
    assert handler.disconnects == ["driver stopped"]
    await asyncio.sleep(0.2)  # nothing may happen: a resubscribe would come within 0.2 s (back-off)
    assert len(master.subscribes) == 1
    with pytest.raises(NotConnectedError):
        await driver.revive([])


async def test_teardown_is_an_explicit_call(master: FakeMaster, make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    await driver.teardown()
    assert [c["type"] for c in master.calls] == ["TEARDOWN"]
    assert driver.status.state is ConnectionState.STOPPED
    await asyncio.sleep(0.2)  # nothing may happen: a resubscribe would come within 0.2 s (back-off)
    assert len(master.subscribes) == 1


async def test_calls_before_subscription_raise_not_connected(make_driver: MakeDriver) -> None:
    driver = make_driver("http://127.0.0.1:1")
    with pytest.raises(NotConnectedError, match="ACKNOWLEDGE not sent"):
        await driver.acknowledge("a", "t", "dXVpZA==")


async def test_nothing_but_subscribe_until_subscribed(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    store = MemoryIdStore()
    store.gate = asyncio.Event()
    driver = make_driver(master.url, store=store)
    await driver.start(RecordingHandler())
    await master.subscribed.wait()
    with pytest.raises(NotConnectedError):
        await driver.decline(["o1"])
    store.gate.set()
    await eventually(lambda: driver.status.subscribed)
    assert master.calls == []


# -- calls --------------------------------------------------------------------------------------


async def test_call_shapes(master: FakeMaster, make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    task = TaskInfo(
        name="t",
        task_id=Value("t1"),
        agent_id=Value("a1"),
        resources=[Resource(name="cpus", scalar=Scalar(1.0))],
    )
    await driver.accept(Launch(offer_ids=["o1"], tasks=[task]), refuse_seconds=5.0)
    await driver.decline(["o2", "o3"], refuse_seconds=120.0)
    await driver.decline(["o4"])
    await driver.suppress(["r"])
    await driver.revive(["r"])
    await driver.kill("t1", "a1")
    await driver.kill("t2")
    await driver.acknowledge("a1", "t1", "dXVpZA==")
    await driver.reconcile([("t1", "a1"), ("t2", None)])
    await driver.reconcile([])
    fid = {"value": "m1-fw-1"}
    assert all(c["framework_id"] == fid for c in master.calls)
    stream_id = master.streams[0].stream_id
    assert all(h["Mesos-Stream-Id"] == stream_id for h in master.call_headers)
    assert all(h["Content-Type"] == "application/json" for h in master.call_headers)
    payloads = [(c["type"], c.get(c["type"].lower())) for c in master.calls]
    assert payloads == [
        (
            "ACCEPT",
            {
                "offer_ids": [{"value": "o1"}],
                "operations": [
                    {
                        "type": "LAUNCH",
                        "launch": {
                            "task_infos": [
                                {
                                    "name": "t",
                                    "task_id": {"value": "t1"},
                                    "agent_id": {"value": "a1"},
                                    "resources": [
                                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}
                                    ],
                                }
                            ]
                        },
                    }
                ],
                "filters": {"refuse_seconds": 5.0},
            },
        ),
        (
            "DECLINE",
            {
                "offer_ids": [{"value": "o2"}, {"value": "o3"}],
                "filters": {"refuse_seconds": 120.0},
            },
        ),
        ("DECLINE", {"offer_ids": [{"value": "o4"}]}),
        ("SUPPRESS", {"roles": ["r"]}),
        ("REVIVE", {"roles": ["r"]}),
        ("KILL", {"task_id": {"value": "t1"}, "agent_id": {"value": "a1"}}),
        ("KILL", {"task_id": {"value": "t2"}}),
        (
            "ACKNOWLEDGE",
            {"agent_id": {"value": "a1"}, "task_id": {"value": "t1"}, "uuid": "dXVpZA=="},
        ),
        (
            "RECONCILE",
            {
                "tasks": [
                    {"task_id": {"value": "t1"}, "agent_id": {"value": "a1"}},
                    {"task_id": {"value": "t2"}},
                ]
            },
        ),
        ("RECONCILE", {"tasks": []}),
    ]


@pytest.mark.parametrize("status", [400, 404, 409])
async def test_a_call_refused_with_4xx_surely_took_no_effect(
    master: FakeMaster, make_driver: MakeDriver, status: int
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    master.call_status = status
    with pytest.raises(DriverError, match=f"HTTP {status}") as raised:
        await driver.kill("t1")
    assert not isinstance(raised.value, CallOutcomeUnknownError)
    # The stream still flows: an event pushed after the 4xx reaches the handler.
    await master.push({"type": "OFFERS", "offers": {"offers": [OFFER]}})
    await eventually(lambda: handler.offers)
    assert handler.disconnects == []
    assert len(master.subscribes) == 1  # a 4xx is the call's problem, not the stream's


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_call_answered_5xx_has_an_unknown_outcome(
    master: FakeMaster, make_driver: MakeDriver, status: int
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    master.call_status = status
    launch = Launch(["o1"], [])
    with pytest.raises(CallOutcomeUnknownError, match=f"HTTP {status}"):
        await driver.accept(launch)


async def test_a_call_timing_out_after_it_was_sent_has_an_unknown_outcome(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    settings = DriverSettings(request_timeout=0.2, backoff_initial=0.05, backoff_max=0.2)
    driver = make_driver(master.url, settings=settings)
    await driver.start(handler)
    await subscribed(driver, handler)
    master.call_delay = 0.6
    with pytest.raises(CallOutcomeUnknownError, match="timed out"):
        await driver.accept(Launch(["o1"], []))
    # ... and the master did get it: treating the timeout as "not sent" would be wrong.
    assert master.max_in_flight == 1


async def test_a_refused_connection_surely_sent_nothing(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    relay = Relay(master.port)
    url = await relay.start()
    try:
        handler = RecordingHandler()
        driver = make_driver(url)
        await driver.start(handler)
        await subscribed(driver, handler)
        relay.refuse()  # the stream stays up through the relay; new connections are refused
        with pytest.raises(DriverError, match="ACCEPT not sent") as raised:
            await driver.accept(Launch(["o1"], []))
        assert not isinstance(raised.value, (CallOutcomeUnknownError, NotConnectedError))
        assert driver.status.subscribed
        assert master.calls == []
    finally:
        await relay.close()


async def test_a_connection_dropped_before_the_answer_has_an_unknown_outcome(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    relay = Relay(master.port)
    url = await relay.start()
    try:
        handler = RecordingHandler()
        driver = make_driver(url)
        await driver.start(handler)
        await subscribed(driver, handler)
        relay.drop_after_request = True  # the call's new connection dies once the request is in
        with pytest.raises(CallOutcomeUnknownError, match="ACCEPT"):
            await driver.accept(Launch(["o1"], []))
        assert relay.dropped == 1
    finally:
        await relay.close()


async def test_thousands_of_acknowledgements_share_the_pool(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    settings = DriverSettings(backoff_initial=0.05, backoff_max=0.2, max_call_connections=8)
    driver = make_driver(master.url, settings=settings)
    await driver.start(handler)
    await subscribed(driver, handler)
    master.call_delay = 0.001
    await asyncio.gather(*(driver.acknowledge("a1", f"t{i}", "dXVpZA==") for i in range(2000)))
    acks = master.calls_of("ACKNOWLEDGE")
    assert len(acks) == 2000
    assert {a["acknowledge"]["task_id"]["value"] for a in acks} == {f"t{i}" for i in range(2000)}
    assert 1 < master.max_in_flight <= 8


async def test_acknowledgements_in_one_batch_are_pipelined_with_exact_json(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    acks = [(f'agent "{i}"', f"tâche-{i}\\", "dXVpZA==") for i in range(300)]
    assert await driver.acknowledge_many(acks) == [None] * 300
    sent = master.calls_of("ACKNOWLEDGE")
    assert [
        (a["acknowledge"]["agent_id"]["value"], a["acknowledge"]["task_id"]["value"]) for a in sent
    ] == [(agent, task) for agent, task, _uuid in acks]
    assert all(a["acknowledge"]["uuid"] == "dXVpZA==" for a in sent)
    assert {a["framework_id"]["value"] for a in sent} == {driver.status.framework_id}
    assert master.max_in_flight == 1  # one connection, answered in order


async def test_acknowledgements_in_a_batch_fail_one_by_one(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    master.call_status = 400
    errors = await driver.acknowledge_many([("a1", f"t{i}", "dXVpZA==") for i in range(3)])
    assert len(errors) == 3
    assert all(
        isinstance(e, DriverError) and "ACKNOWLEDGE answered HTTP 400" in str(e) for e in errors
    )
    await driver.stop()
    errors = await driver.acknowledge_many([("a1", "t1", "dXVpZA==")])
    assert isinstance(errors[0], NotConnectedError)


# -- the event stream ---------------------------------------------------------------------------


async def test_events_are_dispatched_in_stream_order(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    status = {"task_id": {"value": "t1"}, "state": "TASK_RUNNING", "uuid": "dXVpZA=="}
    events = [
        {"type": "OFFERS", "offers": {"offers": [OFFER]}},
        {"type": "RESCIND", "rescind": {"offer_id": {"value": "o1"}}},
        {"type": "UPDATE", "update": {"status": status}},
        {"type": "FAILURE", "failure": {"agent_id": {"value": "a1"}}},
        {"type": "HEARTBEAT"},
        {"type": "MESSAGE", "message": {"agent_id": {"value": "a"}, "executor_id": {"value": "e"}}},
        {"type": "UPDATE", "update": {"status": {**status, "state": "TASK_FINISHED"}}},
    ]
    # One chunk carrying every record: boundaries must not matter.
    await master.push_raw(b"".join(record(e) for e in events))
    await eventually(lambda: len(handler.updates) == 2)
    assert handler.order == ["subscribed", "offers", "rescind", "update", "failure", "update"]
    assert handler.offers[0][0].id.value == "o1"
    assert handler.rescinds == ["o1"]
    assert [u.state for u in handler.updates] == ["TASK_RUNNING", "TASK_FINISHED"]
    assert handler.failures == [("a1", None)]


async def test_undecodable_and_unknown_events_are_skipped(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    with structlog.testing.capture_logs() as logs:
        await master.push_raw(b"5\n{nope")
        await master.push({"type": "FUTURE_EVENT", "future_event": {}})
        await master.push({"type": "OFFERS", "offers": {"offers": [{"bad": 1}]}})
        await master.push({"type": "RESCIND", "rescind": {"offer_id": {"value": "o9"}}})
        await eventually(lambda: handler.rescinds)
    assert handler.rescinds == ["o9"]
    assert handler.offers == []
    events = [e["event"] for e in logs]
    assert events.count("mesos_event_undecodable") == 2
    assert "mesos_event_unknown" in events
    assert handler.disconnects == []


@pytest.mark.parametrize(
    "garbage",
    [pytest.param(b"x1\n{}", id="malformed-length"), pytest.param(b"999999999\n", id="too-big")],
)
async def test_corrupt_framing_closes_the_stream_and_resubscribes(
    master: FakeMaster, make_driver: MakeDriver, garbage: bytes
) -> None:
    handler = RecordingHandler()
    settings = DriverSettings(backoff_initial=0.05, backoff_max=0.2, max_record_bytes=4096)
    driver = make_driver(master.url, settings=settings)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await subscribed(driver, handler)
        await master.push_raw(garbage)
        await subscribed(driver, handler, 2)
    corrupt = [e for e in logs if e["event"] == "mesos_stream_corrupt"]
    assert corrupt[0]["log_level"] == "error"
    assert "record 2" in corrupt[0]["error"]
    assert master.subscribes[1]["framework_id"] == {"value": "m1-fw-1"}


async def test_a_failing_handler_does_not_break_the_stream(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    class Grumpy(RecordingHandler):
        def on_rescind(self, offer_id: str) -> None:
            raise RuntimeError("boom")

    handler = Grumpy()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    await master.push({"type": "RESCIND", "rescind": {"offer_id": {"value": "o1"}}})
    await master.push({"type": "FAILURE", "failure": {"agent_id": {"value": "a1"}}})
    await eventually(lambda: handler.failures)
    assert handler.disconnects == []


# -- status -------------------------------------------------------------------------------------


async def test_status_and_connection_change_logs(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url)
    assert driver.status.state is ConnectionState.DISCONNECTED
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await subscribed(driver, handler)
        status = driver.status
        assert status.state is ConnectionState.SUBSCRIBED
        assert status.master_hostname == "m1.example"
        assert status.master_port == master.port
        assert status.master_online is True
        assert status.framework_id == "m1-fw-1"
        assert status.subscriptions == 1
        assert status.reconnects == 0
        assert status.last_error is None
        await driver.stop()
    changes = [e for e in logs if e["event"] == "mesos_connection_changed"]
    assert [e["state"] for e in changes] == ["CONNECTING", "SUBSCRIBED", "STOPPED"]
    assert changes[1]["master"] == f"m1.example:{master.port}"
    assert changes[1]["framework_id"] == "m1-fw-1"
    assert driver.status.master_online is False


async def test_webui_url_defaults_to_the_api_address(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    config = Config(
        mesos=MesosConfig(user="svc", hostname="sched.test"),
        api=ApiConfig(host="0.0.0.0", port=8123),
    )
    handler = RecordingHandler()
    driver = create_native_driver(
        config, None, MemoryIdStore(), api_url="", detector=StaticMasterDetector([master.url])
    )
    try:
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
    finally:
        await driver.stop()
    info = master.subscribes[0]["subscribe"]["framework_info"]
    assert info["webui_url"] == "http://sched.test:8123/"


async def test_the_stream_is_not_read_while_the_handler_has_no_room(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    master.heartbeat = 0.1  # the watchdog gives up after 0.5 s without an event
    handler = RecordingHandler()
    driver = make_driver(master.url)
    await driver.start(handler)
    await subscribed(driver, handler)
    status = {"task_id": {"value": "t1"}, "state": "TASK_RUNNING", "uuid": "dXVpZA=="}
    await master.push({"type": "UPDATE", "update": {"status": status}})
    await eventually(lambda: len(handler.updates) == 1)
    room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handler.room = room
    # The driver asks for room after each record: at most the next one (a heartbeat or the
    # first of these) is read before it holds the stream.
    for state in ("TASK_KILLING", "TASK_FINISHED"):
        await master.push({"type": "UPDATE", "update": {"status": {**status, "state": state}}})
    # Held longer than the heartbeat watchdog allows: the pause is ours, not a dead master.
    await asyncio.sleep(1.0)  # time must pass: twice the watchdog's limit, held
    assert "TASK_FINISHED" not in [u.state for u in handler.updates]
    assert handler.disconnects == []
    handler.room = None
    room.set_result(None)
    await eventually(lambda: len(handler.updates) == 3)
    assert [u.state for u in handler.updates] == ["TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED"]
    assert handler.disconnects == []
    assert len(master.subscribes) == 1
