"""The notify protocol on its own: addresses, environment, messages, the pinger and STATUS."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from daemonkit import eventually
from servicekit import NotifyListener

from scale_scheduler.daemon.mesos.driver import ConnectionState, ConnectionStatus
from scale_scheduler.daemon.service.sd_notify import (
    Notifier,
    describe_connection,
    ping_watchdog,
    report_status,
)


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    notifier = Notifier(listener.address)
    try:
        assert notifier.ready("API up")
        assert notifier.watchdog()
        assert notifier.stopping("stopping: SIGTERM")
        assert listener.receive(1) == {"READY": "1", "STATUS": "API up"}
        assert listener.receive(1) == {"WATCHDOG": "1"}
        assert listener.receive(1) == {"STOPPING": "1", "STATUS": "stopping: SIGTERM"}
    finally:
        notifier.close()
        listener.close()


def test_messages_reach_an_abstract_socket() -> None:
    listener = NotifyListener(f"@scale-scheduler-test-{uuid.uuid4().hex}")
    notifier = Notifier(listener.address)
    try:
        assert notifier.status("Mesos: connecting to m:5050")
        assert listener.receive(1) == {"STATUS": "Mesos: connecting to m:5050"}
    finally:
        notifier.close()
        listener.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog_interval is None


def test_a_vanished_manager_is_logged_once_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    notifier.close()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000"}, 15.0),
        ({"NOTIFY_SOCKET": "@n", "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "self"}, 0.1),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000"}, None),
        ({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "30000000"}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_this_process_only(
    environ: dict[str, str], interval: float | None
) -> None:
    if environ.get("WATCHDOG_PID") == "self":
        environ = {**environ, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(environ).watchdog_interval == interval


def test_connection_descriptions() -> None:
    status = ConnectionStatus(master_hostname="m1", master_port=5050)
    status.state = ConnectionState.CONNECTING
    assert describe_connection(status) == "Mesos: connecting to m1:5050"
    status.state, status.framework_id = ConnectionState.SUBSCRIBED, "fw-1"
    assert describe_connection(status) == "Mesos: subscribed to m1:5050 as fw-1"
    status.state, status.last_error = ConnectionState.DISCONNECTED, "refused"
    assert describe_connection(status) == "Mesos: disconnected (refused)"
    status.state = ConnectionState.STOPPED
    assert describe_connection(status) == "Mesos: stopped"


async def test_status_is_sent_only_when_it_changes(tmp_path: Path) -> None:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    notifier = Notifier(listener.address)
    texts = iter(["a", "a", "b", "b", "b", "c"])
    last = ["c"]

    described = [0]

    def describe() -> str:
        described[0] += 1
        return next(texts, last[0])

    task = asyncio.create_task(report_status(notifier, describe, interval=0.001, sent="a"))
    try:
        await eventually(lambda: described[0] > 7)  # every text, then "c" again twice
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
    received = []
    while (message := listener.receive(0.05)) is not None:
        received.append(message["STATUS"])
    listener.close()
    assert received == ["b", "c"]


async def test_a_blocked_loop_stops_the_pings(tmp_path: Path) -> None:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    notifier = Notifier(listener.address)
    arrivals: list[float] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            if listener.receive(0.05) is not None:
                arrivals.append(time.monotonic())

    thread = threading.Thread(target=receive)
    thread.start()
    pinger = asyncio.create_task(ping_watchdog(notifier, 0.02))
    try:
        await eventually(lambda: len(arrivals) >= 2)
        blocked_at = time.monotonic()
        time.sleep(0.5)  # noqa: ASYNC251 - not a wait: a stuck loop cannot run the pinger
        unblocked_at = time.monotonic()
        await eventually(lambda: any(t > unblocked_at for t in arrivals))
    finally:
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
        stop.set()
        thread.join()
        notifier.close()
        listener.close()
    assert any(t < blocked_at for t in arrivals), "pings while the loop runs"
    assert any(t > unblocked_at for t in arrivals), "pings again once it runs again"
    # None is sent while the block lasts (0.1 s of slack for the reader to catch up).
    inside = [t for t in arrivals if blocked_at + 0.1 < t < unblocked_at]
    assert inside == []
