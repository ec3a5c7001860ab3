"""The real daemon against the simulator: an ERROR event ends it with exit status 4."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from daemon_process import DaemonProcess, write_config
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster


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
    events = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    fatal = [e for e in events if e["event"] == "daemon_fatal"]
    assert len(fatal) == 1
    assert fatal[0]["reason"] == "FRAMEWORK_REMOVED"
    assert "Framework has been removed" in fatal[0]["message"]
    assert not sim.record.teardown_received
