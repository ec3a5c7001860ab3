"""The real ``scale-scheduler run`` process as systemd runs it: notify messages, signals, logs.

The simulated master runs in its own process (``scale-scheduler sim``); what it saw is read back
over its HTTP record and operator API, as an operator would.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from servicekit import (
    ENTRY_POINT,
    DaemonProcess,
    NotifyListener,
    SimProcess,
    clean_env,
    daemon_config,
    http,
    wait_for,
)


def api_from_status(message: dict[str, str]) -> str:
    match = re.match(r"API (\S+?/)[,;]", message["STATUS"])
    assert match, message
    return match.group(1)


def test_notify_ready_watchdog_stopping_in_order_and_sigterm_keeps_the_framework(
    tmp_path: Path, sim: SimProcess, notify: NotifyListener
) -> None:
    daemon = DaemonProcess.start(
        tmp_path,
        daemon_config(tmp_path, sim.url),
        notify_socket=notify.address,
        WATCHDOG_USEC="200000",
    )
    try:
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1"
        url = api_from_status(ready)
        # The database is open and the API answers by the time READY=1 is sent.
        assert http("GET", url + "scheduler/") == (200, {"is_paused": False})
        subscribed = notify.wait_for("STATUS", "Mesos: subscribed to")
        framework_id = subscribed["STATUS"].rsplit(" as ", 1)[1]
        notify.wait_for("WATCHDOG")
        notify.wait_for("WATCHDOG")

        # A long task is running on an agent when the daemon is told to stop.
        status, created = http(
            "POST",
            url + "queue/",
            {"name": "long", "command": "sleep 60", "cpus": 0.5, "mem": 64,
             "labels": {"sim.duration": "60"}},
        )  # fmt: skip
        assert status == 201
        wait_for(lambda: http("GET", f"{url}tasks/{created['id']}/")[1]["state"] == "RUNNING")

        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        notify.drain()
    finally:
        daemon.kill()

    kinds = [next(iter(message)) for message in notify.messages]
    first_ready = kinds.index("READY")
    first_watchdog = kinds.index("WATCHDOG")
    stopping = kinds.index("STOPPING")
    assert first_ready < first_watchdog < stopping
    assert "WATCHDOG" not in kinds[stopping:], "the pinger stops with STOPPING=1"
    assert notify.messages[stopping]["STATUS"] == "stopping: SIGTERM"

    # No TEARDOWN: the master still knows the framework and its task keeps running.
    assert sim.record()["teardown_received"] is False
    frameworks = sim.operator("GET_FRAMEWORKS")["frameworks"]
    ours = [f for f in frameworks if f["framework_info"]["id"]["value"] == framework_id]
    assert ours
    assert ours[0]["connected"] is False
    tasks = sim.operator("GET_TASKS")["tasks"]
    assert [t["state"] for t in tasks if t["framework_id"]["value"] == framework_id] == [
        "TASK_RUNNING"
    ]
    names = [event["event"] for event in daemon.events()]
    assert names.index("daemon_stopping") < names.index("daemon_stopped")


def test_sigint_stops_cleanly_without_watchdog_when_systemd_asks_for_none(
    tmp_path: Path, sim: SimProcess, notify: NotifyListener
) -> None:
    daemon = DaemonProcess.start(
        tmp_path, daemon_config(tmp_path, sim.url), notify_socket=notify.address
    )
    try:
        notify.wait_for("READY")
        notify.wait_for("STATUS", "Mesos: subscribed to")
        daemon.send(signal.SIGINT)
        assert daemon.wait(timeout=10) == 0
        notify.drain()
    finally:
        daemon.kill()
    kinds = [next(iter(message)) for message in notify.messages]
    assert "WATCHDOG" not in kinds
    assert kinds[-1] == "STOPPING"
    stopping = daemon.wait_for_event("daemon_stopping")
    assert stopping["reason"] == "SIGINT"
    assert sim.record()["teardown_received"] is False


def test_sighup_rereads_the_logging_level(
    tmp_path: Path, sim: SimProcess, notify: NotifyListener
) -> None:
    config = daemon_config(tmp_path, sim.url, level="warning")
    daemon = DaemonProcess.start(tmp_path, config, notify_socket=notify.address)
    try:
        url = api_from_status(notify.wait_for("READY"))
        assert http("GET", url + "status/")[0] == 200  # at warning: no access log line

        config["logging"]["level"] = "info"
        daemon.config_path.write_text(yaml.safe_dump(config))
        daemon.send(signal.SIGHUP)
        daemon.wait_for_event("logging_level_reloaded", level="info")
        assert http("GET", url + "status/")[0] == 200
        daemon.wait_for_event("http_request", path="/status/")

        daemon.config_path.write_text("logging: {level: loud}\n")
        daemon.send(signal.SIGHUP)
        daemon.wait_for_event("config_reload_failed")
        assert daemon.proc.poll() is None, "a bad config on SIGHUP keeps the daemon running"
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    requests = [e for e in daemon.events() if e["event"] == "http_request"]
    assert len(requests) == 1, "only the request made after SIGHUP is logged"


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        ("logging: {level: loud}\n", 2),
        ("state: {path: a-file/state.db}\n", 3),  # its directory cannot be created
    ],
)
def test_start_up_failures_exit_with_their_code_and_never_send_ready(
    tmp_path: Path, notify: NotifyListener, config_text: str, expected: int
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    (tmp_path / "a-file").write_text("not a directory")
    done = subprocess.run(
        [str(ENTRY_POINT), "run", "--config", str(path)],
        cwd=tmp_path,
        env=clean_env(NOTIFY_SOCKET=notify.address),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == expected, done.stdout + done.stderr
    notify.drain(0.1)
    assert not any("READY" in message for message in notify.messages)


def test_logs_are_readable_lines_on_a_terminal(tmp_path: Path, sim: SimProcess) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(daemon_config(tmp_path, sim.url, fmt="auto")))
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "run", "--config", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=clean_env(),
    )
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while b"daemon_started" not in seen and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.1)[0]:
                seen += os.read(controller, 65536)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    text = re.sub(r"\x1b\[[0-9;]*m", "", seen.decode())  # colours
    line = next(line for line in text.splitlines() if "daemon_started" in line)
    assert not line.lstrip().startswith("{"), line
    assert re.search(r"\[info +\] daemon_started .* api=http://127\.0\.0\.1:\d+/", line), line
