"""The end-of-run audit of the scenarios ("every task is accounted for exactly once"), for any
daemon deployment that can be asked through its API and read in its database: one process
(``reliability_kit.Daemon``) or several instances sharing one PostgreSQL (``hakit``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from scale_scheduler.simulator import SimulatedCluster
from scale_scheduler.state.tasks import parse_mesos_task_id

SIM: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.05,
    "task_start_delay": 0.02,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "default_refuse_seconds": 0.2,
}
"""The simulator's timings for audited scenarios: tasks start and finish within a second."""

LIVE_STATES = ("QUEUED", "LAUNCHING", "STAGING", "STARTING", "RUNNING", "KILLING", "UNREACHABLE")


class Audited(Protocol):
    """What the audit needs of a deployment: its API's ``/status/`` and task list, and
    read-only queries (``?`` parameters) of its database."""

    async def status(self) -> dict[str, Any]: ...

    async def api_task_states(self) -> dict[int, str]: ...

    async def db(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def db_task_states(self) -> dict[int, str]: ...


async def api_task_states(get: Callable[[str], Awaitable[Any]]) -> dict[int, str]:
    """Every task's state as ``GET /tasks/`` lists them, page by page (``get``: a path's
    200 body)."""
    states: dict[int, str] = {}
    page = 1
    while True:
        body = await get(f"/tasks/?page_size=10000&page={page}")
        states.update((view["id"], view["state"]) for view in body["results"])
        if body["next"] is None:
            assert body["count"] == len(states)
            return states
        page += 1


def launches_per_task(sim: SimulatedCluster) -> Counter[int]:
    """Launches on agents per daemon task id, summed over its attempts (``<id>-<attempt>``)."""
    per_task: Counter[int] = Counter()
    for mesos_id, count in sim.record.launch_counts.items():
        parsed = parse_mesos_task_id(mesos_id)
        assert parsed is not None, f"{mesos_id!r} is not a task id the daemon makes"
        per_task[parsed[0]] += count
    return per_task


async def wait_drained(daemon: Audited, sim: SimulatedCluster, timeout: float = 90) -> None:
    """Until nothing is queued or live, in the API and in the database, and no agent runs ours."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    marks = ",".join("?" * len(LIVE_STATES))
    while True:
        status = await daemon.status()
        live = await daemon.db(
            f"SELECT state, COUNT(*) FROM tasks WHERE state IN ({marks}) GROUP BY state",
            LIVE_STATES,
        )
        if status["queue_depth"] == 0 and not live and not sim.tasks():
            return
        if loop.time() > deadline:
            raise AssertionError(
                f"not drained: queue_depth={status['queue_depth']} live={live} "
                f"sim_tasks={len(sim.tasks())} paused={status['scheduler']['is_paused']}"
            )
        await asyncio.sleep(0.1)  # poll interval of this wait on a condition


async def audit(daemon: Audited, sim: SimulatedCluster, expected: Iterable[int]) -> dict[int, str]:
    """Every task is accounted for exactly once: each expected id ended FINISHED, no other task
    exists, the database and the API agree, and each task ran on an agent exactly once (all
    attempts together), with no Mesos task id ever launched twice. Returns the states."""
    await wait_drained(daemon, sim)
    db_states = await daemon.db_task_states()
    api_states = await daemon.api_task_states()
    assert api_states == db_states
    expected_ids = set(expected)
    missing = expected_ids - set(db_states)
    assert not missing, f"{len(missing)} acknowledged tasks are missing, e.g. {sorted(missing)[:5]}"
    not_finished = {i: s for i, s in db_states.items() if s != "FINISHED"}
    assert not not_finished, f"tasks that did not finish: {dict(list(not_finished.items())[:10])}"
    assert sim.record.launched_more_than_once() == {}
    per_task = launches_per_task(sim)
    assert set(per_task) == set(db_states), "launches of tasks the database does not know"
    twice = {i: n for i, n in per_task.items() if n != 1}
    assert not twice, f"tasks that ran more than once: {dict(list(twice.items())[:10])}"
    status = await daemon.status()
    assert status["queue_depth"] == 0
    assert status["resources"]["scheduled"] == {"cpus": 0.0, "mem": 0.0, "disk": 0.0}
    return db_states
