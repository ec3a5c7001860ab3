"""Conformance with an independent client: pymesos's `MesosSchedulerDriver` on Python 3.10.

The interpreter comes from `SCALE_TEST_PYTHON310` (the Makefile/CI point it at
`.venv310/bin/python`, which has pymesos installed). Unset, the test skips, except under `CI`,
where it fails: CI must run it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from sim_client import FAST

from scale_scheduler.simulator import SimulatedCluster

SCRIPT = Path(__file__).with_name("pymesos_conformance.py")


def _python310() -> str:
    python = os.environ.get("SCALE_TEST_PYTHON310")
    if not python:
        message = "SCALE_TEST_PYTHON310 is not set (point it at .venv310/bin/python)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


async def test_pymesos_driver_launches_a_task_to_finished() -> None:
    python = _python310()
    async with SimulatedCluster(**FAST, masters=2) as sim:
        # Start pymesos on the follower: it must follow the 307 to the leader by itself.
        proc = await asyncio.create_subprocess_exec(
            python,
            str(SCRIPT),
            sim.addresses[1],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()[-3000:]
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["states"] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert result["master"] == sim.addresses[0]
        assert result["offers"] >= 1
        assert sim.record.launch_counts == {"pymesos-task-1": 1}
        assert sim.record.calls["ACKNOWLEDGE"] == 3  # pymesos's implicit acknowledgements
        assert sim.record.teardown_received is False
        (info,) = sim.record.framework_infos
        assert info["name"] == "conformance"
        assert {"type": "GPU_RESOURCES"} in info["capabilities"]
