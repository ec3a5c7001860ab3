"""Issue 17's task lifecycle end to end: the API app with the native driver and the scheduling
core against the simulated Mesos cluster. Retries of a task's own failures wait out a growing
back-off; a task whose agent is gone retries at once without using an attempt; a retry goes to
a host it has not failed on; max_runtime ends a task with Mesos's reason; a kill with a grace
period shows KILLING, then KILLED once the grace is over. Waits are on conditions."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from daemonkit import Daemon, running_daemon, task

from scale_scheduler.state.domain import TaskState

SIM = {"seed": 17, "task_duration": 0.05}


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def scripted(name: str, outcome: str, duration: float = 0.05, **extra: Any) -> dict[str, Any]:
    labels = {"sim.outcome": outcome, "sim.duration": str(duration)}
    return task(name, labels=labels, **extra)


async def ended(daemon: Daemon, task_id: int, state: str, timeout: float = 20) -> dict[str, Any]:
    board = daemon.core.board
    await daemon.until(lambda: task_id not in board.tasks, timeout=timeout)
    view = await daemon.task(task_id)
    assert view["state"] == state, view
    return view


async def test_failures_of_its_own_relaunch_after_growing_delays(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=2, sim=SIM) as daemon:
        backoff = {"initial": 0.2, "factor": 2, "max": 5}
        (task_id,) = await daemon.submit(
            [scripted("crash", "FAILED", max_attempts=4, retry_backoff=backoff)]
        )
        board = daemon.core.board
        # While it waits, its view says until when, and it is not in the queue index.
        await daemon.until(lambda: task_id in board.retry_waits)
        waiting = await daemon.task(task_id)
        assert waiting["state"] == "QUEUED"
        assert waiting["next_attempt_at"] is not None
        assert waiting["waiting_reason"] == f"retry back-off until {waiting['next_attempt_at']}"
        view = await ended(daemon, task_id, "FAILED")
        history = view["attempt_history"]
        assert [a["attempt"] for a in history] == [1, 2, 3, 4]
        assert {a["failure_class"] for a in history} == {"task"}
        assert {a["state"] for a in history} == {"FAILED"}
        assert view["failures"] == 4
        assert view["next_attempt_at"] is None
        gaps = [
            stamp(following["launched"]) - stamp(earlier["ended"])
            for earlier, following in itertools.pairwise(history)
        ]
        # 0.2 s, 0.4 s, 0.8 s (timestamps are kept to the millisecond)
        for gap, wait in zip(gaps, (0.2, 0.4, 0.8), strict=True):
            assert gap >= wait - 0.002, gaps
        assert gaps[0] < gaps[1] < gaps[2], gaps
        samples = await daemon.scrape()
        failures = "scale_scheduler_task_failures_total"
        assert samples.get(failures, **{"class": "task"}) == 4
        assert samples.get(failures, **{"class": "cluster"}) == 0
        assert samples.get("scale_scheduler_retries_delayed_total") == 3
        dashboard = await (await daemon.client.get("/dashboard/state/")).json()
        (recent,) = [t for t in dashboard["recent"] if t["id"] == task_id]
        assert recent["attempt_classes"] == ["task"] * 4


async def test_a_task_whose_agent_is_gone_retries_at_once_without_using_an_attempt(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, agents=2, sim=SIM) as daemon:
        (task_id,) = await daemon.submit([scripted("long", "RUNNING", max_attempts=1)])
        board = daemon.core.board
        await daemon.until(lambda: board.tasks[task_id].state is TaskState.RUNNING)
        host = board.tasks[task_id].hostname
        assert host is not None
        assert daemon.sim.remove_agent(host)
        await daemon.until(lambda: board.tasks[task_id].state is TaskState.UNREACHABLE)
        assert daemon.sim.mark_agent_gone(host) == 1
        await daemon.until(
            lambda: (
                board.tasks[task_id].attempts == 2
                and board.tasks[task_id].state is TaskState.RUNNING
            )
        )
        view = await daemon.task(task_id)
        assert (view["failures"], view["max_attempts"]) == (0, 1)
        first, second = view["attempt_history"]
        assert (first["state"], first["failure_class"]) == ("GONE", "cluster")
        assert first["reason"] == "REASON_AGENT_REMOVED_BY_OPERATOR"
        assert (second["state"], second["failure_class"]) == ("RUNNING", None)
        assert second["hostname"] != host
        samples = await daemon.scrape()
        assert samples.get("scale_scheduler_task_failures_total", **{"class": "cluster"}) == 1
        assert samples.get("scale_scheduler_retries_delayed_total") == 0  # at once: no back-off


async def test_retries_go_to_hosts_they_have_not_failed_on(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=2, sim=SIM) as daemon:
        backoff = {"initial": 0, "factor": 1, "max": 0}  # no wait: placement is the point
        ids = await daemon.submit(
            [scripted(f"f{i}", "FAILED", max_attempts=2, retry_backoff=backoff) for i in range(6)]
        )
        for task_id in ids:
            view = await ended(daemon, task_id, "FAILED")
            first, second = view["attempt_history"]
            assert first["hostname"] != second["hostname"], view["attempt_history"]


async def test_max_runtime_ends_a_long_task_with_the_masters_reason(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=1, sim=SIM) as daemon:
        (task_id,) = await daemon.submit([scripted("hung", "RUNNING", max_runtime=0.3)])
        board = daemon.core.board
        await daemon.until(lambda: board.tasks[task_id].state.launched)
        info = daemon.sim.task(f"{task_id}-1")
        assert info is not None
        assert info.info["max_completion_time"] == {"nanoseconds": 300_000_000}
        view = await ended(daemon, task_id, "FAILED")
        assert view["last_status"]["reason"] == "REASON_MAX_COMPLETION_TIME_REACHED"
        assert view["attempt_history"][-1]["failure_class"] == "task"
        assert view["max_runtime"] == 0.3


async def test_a_kill_with_a_grace_period_shows_killing_then_killed_after_it(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, agents=1, sim=SIM) as daemon:
        (task_id,) = await daemon.submit([scripted("graceful", "RUNNING", kill_grace_period=0.5)])
        board = daemon.core.board
        await daemon.until(lambda: board.tasks[task_id].state is TaskState.RUNNING)
        info = daemon.sim.task(f"{task_id}-1")
        assert info is not None
        assert info.info["kill_policy"] == {"grace_period": {"nanoseconds": 500_000_000}}
        asked = time.time()
        response = await daemon.client.delete(f"/tasks/{task_id}/")
        assert response.status == 202
        assert (await response.json())["state"] == "KILLING"
        await daemon.until(lambda: board.tasks[task_id].state is TaskState.KILLING)
        assert (await daemon.task(task_id))["state"] == "KILLING"
        view = await ended(daemon, task_id, "KILLED")
        assert stamp(view["ended"]) - asked >= 0.5 - 0.002
        (attempt,) = view["attempt_history"]
        assert (attempt["state"], attempt["failure_class"]) == ("KILLED", "operator")
        samples = await daemon.scrape()
        assert samples.get("scale_scheduler_kills_past_grace_period_total") == 0
