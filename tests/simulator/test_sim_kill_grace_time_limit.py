"""The agents' kill grace period and run-time limit, on a clock the test drives.

Mesos: ``KillPolicy.grace_period`` (in the TaskInfo, or overridden by the KILL call) is the time
between SIGTERM and SIGKILL, with TASK_KILLING meanwhile; ``TaskInfo.max_completion_time`` ends
a task that runs too long with TASK_FAILED and ``REASON_MAX_COMPLETION_TIME_REACHED``.
"""

from __future__ import annotations

import random
from typing import Any

from clockkit import ManualClock

from scale_scheduler.simulator.agents import Agent, AgentPool, SimTask, TaskScript
from scale_scheduler.simulator.config import AgentSpec, SimConfig
from scale_scheduler.simulator.resources import Resources
from scale_scheduler.simulator.timers import Timers


class RecordingMaster:
    """Takes every forwarded update and acknowledges it at once, noting when it came."""

    def __init__(self, pool: AgentPool, clock: ManualClock) -> None:
        self.pool = pool
        self.clock = clock
        self.updates: list[tuple[float, str, str | None]] = []

    def agent_registered(self, agent: Agent) -> None:
        pass

    def task_completed(self, task: SimTask) -> None:
        pass

    def forward_update(self, task: SimTask, status: dict[str, Any]) -> None:
        self.updates.append(
            (round(self.clock.now - 1000.0, 6), status["state"], status.get("reason"))
        )
        self.clock.call_later(0.0, self.pool.acknowledge, task, status["uuid"])


def start(
    info: dict[str, Any], script: TaskScript
) -> tuple[ManualClock, AgentPool, RecordingMaster, SimTask]:
    clock = ManualClock(start=1000.0)
    pool = AgentPool(SimConfig(kill_delay=0.05), Timers(clock), random.Random(7), "sim")
    master = RecordingMaster(pool, clock)
    agent = pool.create_agent(AgentSpec())
    pool.register(agent, master)
    task = SimTask(
        task_id="t",
        framework_id="fw",
        agent=agent,
        info=info,
        resources=Resources.of({"cpus": 1.0}),
        script=script,
        partition_aware=True,
    )
    pool.launch(task)
    return clock, pool, master, task


def seconds(value: float) -> dict[str, int]:
    return {"nanoseconds": int(value * 1e9)}


def test_a_kill_without_grace_ends_after_the_kill_delay() -> None:
    clock, pool, master, task = start({}, TaskScript(100.0, "FINISHED", 1.0))
    clock.advance(2.0)
    pool.kill(task, killing_state=True)
    clock.advance(1.0)
    assert master.updates == [
        (0.5, "TASK_STARTING", None),
        (1.0, "TASK_RUNNING", None),
        (2.0, "TASK_KILLING", None),
        (2.05, "TASK_KILLED", None),
    ]


def test_the_grace_period_holds_the_task_in_killing_until_it_is_over() -> None:
    info = {"kill_policy": {"grace_period": seconds(3.0)}}
    clock, pool, master, task = start(info, TaskScript(100.0, "FINISHED", 1.0))
    clock.advance(2.0)
    pool.kill(task, killing_state=True, grace=3.0)
    clock.advance(2.9)
    assert master.updates[-1] == (2.0, "TASK_KILLING", None)
    clock.advance(0.2)
    assert master.updates[-1] == (5.0, "TASK_KILLED", None)
    clock.advance(200.0)  # the script's own end, later, changes nothing
    assert [state for _, state, _ in master.updates].count("TASK_KILLED") == 1
    assert len(master.updates) == 4


def test_a_task_whose_script_ends_within_the_grace_period_is_killed_then() -> None:
    clock, pool, master, task = start({}, TaskScript(2.0, "FINISHED", 1.0))
    clock.advance(1.5)
    pool.kill(task, killing_state=True, grace=10.0)
    clock.advance(20.0)
    assert master.updates[-2:] == [(1.5, "TASK_KILLING", None), (3.0, "TASK_KILLED", None)]


def test_a_second_kill_with_a_shorter_grace_brings_the_end_forward() -> None:
    clock, pool, master, task = start({}, TaskScript(100.0, "FINISHED", 1.0))
    clock.advance(2.0)
    pool.kill(task, killing_state=True, grace=30.0)
    clock.advance(1.0)
    pool.kill(task, killing_state=True, grace=0.5)
    clock.advance(40.0)
    assert master.updates[-2:] == [(2.0, "TASK_KILLING", None), (3.5, "TASK_KILLED", None)]
    assert len(master.updates) == 4


def test_the_run_time_limit_fails_a_long_task_with_its_reason() -> None:
    info = {"max_completion_time": seconds(5.0)}
    clock, _pool, master, _task = start(info, TaskScript(60.0, "FINISHED", 1.0))
    clock.advance(100.0)
    # The executor starts the clock at launch (STARTING, 0.5 s): the limit falls at 5.5 s.
    assert master.updates == [
        (0.5, "TASK_STARTING", None),
        (1.0, "TASK_RUNNING", None),
        (5.5, "TASK_FAILED", "REASON_MAX_COMPLETION_TIME_REACHED"),
    ]


def test_a_task_within_its_limit_ends_as_scripted() -> None:
    info = {"max_completion_time": seconds(5.0)}
    clock, _pool, master, _task = start(info, TaskScript(2.0, "FINISHED", 1.0))
    clock.advance(100.0)
    assert master.updates[-1] == (3.0, "TASK_FINISHED", None)
    assert len(master.updates) == 3
