"""What the task tracker logs: routine progress per task at debug with one info summary per
burst; failures, kills, losses, retries, reverts and cancels per task at info."""

from __future__ import annotations

from typing import Any

import pytest
from corekit import CoreHarness, make_offer, status
from structlog.testing import capture_logs


async def launch(h: CoreHarness, count: int = 1, **kw: object) -> list[int]:
    ids = await h.submit(count, **kw)
    await h.offer_pass(make_offer(f"o-{ids[0]}", "a1", cpus=count * 4, mem=count * 4096))
    return ids


def changes(logs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(old, new, level) of every ``task_state_changed`` event."""
    return [
        (e["old"], e["new"], e["log_level"]) for e in logs if e["event"] == "task_state_changed"
    ]


def summaries(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "task_states_changed"]


async def test_routine_progress_is_debug_per_task_and_one_info_summary_per_burst(
    harness: CoreHarness,
) -> None:
    await harness.start()
    with capture_logs() as logs:
        ids = await launch(harness, 3)
        burst = [
            status(f"{i}-1", state)
            for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED")
            for i in ids
        ]
        await harness.updates(*burst)
    assert sorted(changes(logs)) == sorted(
        [("QUEUED", "LAUNCHING", "debug")] * 3
        + [
            ("LAUNCHING", "STARTING", "debug"),
            ("STARTING", "RUNNING", "debug"),
            ("RUNNING", "FINISHED", "debug"),
        ]
        * 3
    )
    (summary,) = summaries(logs)
    assert summary["log_level"] == "info"
    assert summary["tasks"] == 3
    assert summary["by_state"] == {"STARTING": 3, "RUNNING": 3, "FINISHED": 3}
    (offer_pass,) = [e for e in logs if e["event"] == "offer_pass"]
    assert offer_pass["launched"] == 3  # the launches' info-level count


@pytest.mark.parametrize(
    ("mesos_state", "max_attempts", "new"),
    [
        ("TASK_FAILED", 1, "FAILED"),
        ("TASK_FAILED", 2, "QUEUED"),  # a retry
        ("TASK_KILLED", 1, "QUEUED"),  # nobody here asked: the cluster's failure, retried
        ("TASK_LOST", 1, "QUEUED"),  # the cluster's failure: retried, not an attempt
        ("TASK_ERROR", 1, "ERROR"),
        ("TASK_UNREACHABLE", 1, "UNREACHABLE"),
    ],
)
async def test_failures_kills_losses_and_retries_stay_per_task_at_info(
    harness: CoreHarness, mesos_state: str, max_attempts: int, new: str
) -> None:
    await harness.start()
    (task_id,) = await launch(harness, max_attempts=max_attempts)
    await harness.updates(status(f"{task_id}-1", "TASK_RUNNING"))
    with capture_logs() as logs:
        await harness.updates(status(f"{task_id}-1", mesos_state, reason="REASON_X"))
    (event,) = [e for e in logs if e["event"] == "task_state_changed"]
    assert (event["old"], event["new"], event["log_level"]) == ("RUNNING", new, "info")
    assert (event["task_id"], event["reason"]) == (task_id, "REASON_X")
    (summary,) = summaries(logs)
    assert summary["by_state"] == {new: 1}


async def test_a_reverted_launch_is_logged_per_task_at_info(harness: CoreHarness) -> None:
    await harness.start()
    harness.driver.fail.add("accept")
    with capture_logs() as logs:
        await launch(harness, 2)
    assert (
        sorted(changes(logs))
        == [("LAUNCHING", "QUEUED", "info")] * 2 + [("QUEUED", "LAUNCHING", "debug")] * 2
    )


async def test_a_cancel_is_logged_per_task_at_info(harness: CoreHarness) -> None:
    await harness.start()
    (task_id,) = await harness.submit(1)
    with capture_logs() as logs:
        await harness.c.tracker.delete(task_id)
    assert changes(logs) == [("QUEUED", "CANCELED", "info")]
