"""The real entry point, ``scale-scheduler run``, with ``mesos.driver: pymesos`` (Python 3.10):
it launches work, stops on SIGINT and SIGTERM like the native driver (exit 0, no TEARDOWN),
resubscribes with the same framework id when started again; and pymesos's import-time changes
to the process are undone."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from pymesos_kit import require_pymesos

require_pymesos()

from pymesos_kit import SIM, console_script, eventually, log_events, write_config  # noqa: E402

from scale_scheduler.simulator import SimulatedCluster  # noqa: E402


class RunningDaemon:
    def __init__(self, proc: asyncio.subprocess.Process, output: Path) -> None:
        self.proc = proc
        self.output = output

    def api_url(self) -> str | None:
        for event in log_events(self.output):
            if event.get("event") == "daemon_started":
                return str(event["api"])
        return None

    async def stop(self, signum: signal.Signals) -> int:
        self.proc.send_signal(signum)
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def start_daemon(config: Path, output: Path) -> RunningDaemon:
    with output.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            console_script(),
            "run",
            "--config",
            str(config),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=str(config.parent),
        )
    return RunningDaemon(proc, output)


async def test_run_launches_stops_on_signals_and_resubscribes(tmp_path: Path) -> None:
    async with SimulatedCluster(agents=2, **SIM) as sim:
        config = write_config(tmp_path / "config.yaml", sim.url, tmp_path / "state.db")
        output = tmp_path / "daemon.log"
        daemon = await start_daemon(config, output)
        try:
            await eventually(lambda: sim.subscriptions() and daemon.api_url(), timeout=30)
        finally:
            if daemon.proc.returncode is not None:
                print(output.read_text())
        (framework,) = sim.frameworks()
        url = daemon.api_url()
        assert url is not None
        tasks = [{"name": f"p{i}", "command": "true", "cpus": 0.1, "mem": 16} for i in range(20)]
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "queue/", json=tasks) as response,
        ):
            assert response.status == 201, await response.text()
        await eventually(lambda: len(sim.record.launch_counts) == 20, timeout=30)
        await eventually(lambda: sim.tasks() == [], timeout=30)

        assert await daemon.stop(signal.SIGINT) == 0
        assert sim.record.teardown_received is False
        assert [f.id for f in sim.frameworks()] == [framework.id]

        daemon = await start_daemon(config, output)
        try:
            await eventually(lambda: len(sim.record.framework_infos) == 2, timeout=30)
            await eventually(lambda: sim.subscriptions(), timeout=30)
        finally:
            if daemon.proc.returncode is not None:
                print(output.read_text())
        assert sim.record.framework_infos[1]["id"] == {"value": framework.id}
        assert await daemon.stop(signal.SIGTERM) == 0

    events = log_events(output)
    assert sim.record.teardown_received is False
    assert sim.record.launched_more_than_once() == {}
    stopped = [e for e in events if e.get("event") == "daemon_stopped"]
    assert [e["exit_code"] for e in stopped] == [0, 0]
    reasons = [e["reason"] for e in events if e.get("event") == "daemon_stopping"]
    assert reasons == ["SIGINT", "SIGTERM"]
    text = output.read_text(encoding="utf-8", errors="replace")
    assert "KeyboardInterrupt" not in text
    assert "TEARDOWN" not in text


UNDO_SCRIPT = """
import json, logging, signal
from scale_scheduler.daemon.service.config import Config, MesosConfig
from scale_scheduler.daemon.mesos.driver_factory import create_driver

class Store:
    async def save_framework_id(self, framework_id):
        pass

    async def load_framework_id(self):
        return None

before = signal.getsignal(signal.SIGINT)
config = Config(mesos=MesosConfig(driver="pymesos", user="svc", hostname="h"))
driver = create_driver(config, None, Store(), api_url="http://h:1/")
import pymesos.process
print(json.dumps({
    "driver": type(driver).__name__,
    "sigint_restored": signal.getsignal(signal.SIGINT) is before,
    "pymesos_handler_installed_at_import": pymesos.process._prev_handler is before,
    "pymesos_log_handlers": len(logging.getLogger("pymesos").handlers),
    "interrupt_main_neutralised": type(pymesos.process.thread).__name__ != "module",
}))
"""


def test_creating_the_driver_undoes_pymesos_import_effects(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNDO_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "driver": "PymesosDriver",
        "sigint_restored": True,
        "pymesos_handler_installed_at_import": True,
        "pymesos_log_handlers": 0,
        "interrupt_main_neutralised": True,
    }
