"""The real daemon's fatal Mesos outcomes, each logged as ONE error line (``daemon_fatal``):
the master's ERROR exits 4, no subscription for ``mesos.give_up_after`` seconds exits 6."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from daemon_process import DaemonProcess, write_config
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster


def log_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    text = daemon.log_path.read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def the_one_error(daemon: DaemonProcess) -> dict[str, Any]:
    """The daemon_fatal event, after checking it is the only error-level line of the run."""
    errors = [e for e in log_events(daemon) if e["level"] == "error"]
    assert [e["event"] for e in errors] == ["daemon_fatal"], daemon.logs()
    return errors[0]


async def test_error_event_exits_4_and_keeps_the_framework_id(tmp_path: Path) -> None:
    async with SimulatedCluster(agents=1, heartbeat_interval=0.2, seed=7) as sim:
        port = free_port()
        config = write_config(
            tmp_path / "config.yaml",
            api={"port": port},
            state={"path": str(tmp_path / "state.db")},
            mesos={"master": sim.url},
        )
        daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
        daemon.start()
        try:
            await daemon.wait_ready()
            deadline = time.monotonic() + 10
            while not sim.frameworks() or sim.frameworks()[0].subscription is None:
                assert time.monotonic() < deadline, daemon.logs()
                await asyncio.sleep(0.05)  # poll interval of the wait for the subscription
            framework_id = sim.frameworks()[0].id
            payload = json.dumps(
                {"type": "ERROR", "error": {"message": "Framework has been removed"}}
            ).encode()
            assert sim.inject_raw(b"%d\n%s" % (len(payload), payload), framework_id) == 1
            assert daemon.proc is not None
            code = await asyncio.to_thread(daemon.proc.wait, 15)
        finally:
            daemon.stop_quietly()
    assert code == 4, daemon.logs()
    fatal = the_one_error(daemon)
    assert (fatal["exit_code"], fatal["reason"]) == (4, "FRAMEWORK_REFUSED")
    assert fatal["message"] == "Framework has been removed"
    received = [e for e in log_events(daemon) if e["event"] == "mesos_error_event"]
    assert [e["level"] for e in received] == ["info"]  # where it came from, once
    assert not sim.record.teardown_received


async def test_no_subscription_for_give_up_after_exits_6(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        api={"port": port},
        state={"path": str(tmp_path / "state.db")},
        # nothing listens there
        mesos={
            "master": f"http://127.0.0.1:{free_port()}",
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "give_up_after": 1.0,
        },
    )
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        assert daemon.proc is not None
        code = await asyncio.to_thread(daemon.proc.wait, 30)
    finally:
        daemon.stop_quietly()
    assert code == 6, daemon.logs()
    fatal = the_one_error(daemon)
    assert (fatal["exit_code"], fatal["reason"]) == (6, "SUBSCRIPTION_LOST")
    assert fatal["message"].startswith(
        "no subscription to a Mesos master for 1s (mesos.give_up_after); last error: "
    )
    names = [e["event"] for e in log_events(daemon)]
    assert names.count("mesos_subscribe_failed") >= 2  # it kept trying until the limit
    assert names[-1] == "daemon_stopped"
