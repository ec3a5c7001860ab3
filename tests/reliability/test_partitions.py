"""Partitions between the real daemon and the master, in the middle of launches: heartbeats stop,
the stream hangs or drops, calls time out or fail. The daemon reconnects where the stream is
concerned, retries or reverts where calls are, and at the end nothing is lost and no task was
launched twice.

Every fault runs on SQLite; on PostgreSQL, the faults that leave writes in flight or in doubt
(an ACCEPT that times out after its launch intents were committed, status updates acknowledged
late, a stream that drops mid-launch), to keep the scenario's cost in CI bounded: the stream's
own faults do not reach the state backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, audit, launches, task_body

from scale_scheduler.simulator import SimulatedCluster

TASKS = 600
REQUEST_TIMEOUT = 1.0


def subscribes(sim: SimulatedCluster) -> int:
    return sim.record.calls["SUBSCRIBE"]


async def resubscribed(daemon: Daemon, sim: SimulatedCluster, before: int) -> None:
    await sim.wait_until(lambda: subscribes(sim) > before, timeout=15)
    await daemon.wait_subscribed()


async def stop_heartbeats(daemon: Daemon, sim: SimulatedCluster) -> None:
    before = subscribes(sim)
    sim.stop_heartbeats()  # other events keep the stream alive until the work runs out
    await resubscribed(daemon, sim, before)
    reasons = [e["reason"] for e in daemon.events("mesos_stream_interrupted")]
    assert "no event from the master for 1s" in reasons  # 5 heartbeats of 0.2 s


async def hang_stream(daemon: Daemon, sim: SimulatedCluster) -> None:
    before = subscribes(sim)
    sim.hang_stream()
    await resubscribed(daemon, sim, before)
    assert daemon.events("mesos_stream_interrupted")


async def drop_stream(daemon: Daemon, sim: SimulatedCluster) -> None:
    before = subscribes(sim)
    sim.close_stream(abort=True)
    await resubscribed(daemon, sim, before)
    # Whichever the daemon notices first: the broken stream, or a call answered 403.
    assert daemon.events("scheduler_disconnected")


async def accepts_time_out(daemon: Daemon, sim: SimulatedCluster) -> None:
    sim.delay_calls(REQUEST_TIMEOUT * 2, "ACCEPT", count=3)
    await sim.wait_until(lambda: len(daemon.events("accept_failed")) >= 3, timeout=20)
    assert all("timed out" in e["error"] for e in daemon.events("accept_failed"))


async def accepts_fail(daemon: Daemon, sim: SimulatedCluster) -> None:
    sim.fail_calls(500, "ACCEPT", count=5)
    await sim.wait_until(lambda: len(daemon.events("accept_failed")) >= 5, timeout=20)
    assert all("HTTP 500" in e["error"] for e in daemon.events("accept_failed"))


async def acks_time_out(daemon: Daemon, sim: SimulatedCluster) -> None:
    sim.delay_calls(REQUEST_TIMEOUT * 2, "ACKNOWLEDGE", count=50)
    await sim.wait_until(lambda: daemon.events("status_ack_failed"), timeout=20)


async def calls_refused_403(daemon: Daemon, sim: SimulatedCluster) -> None:
    # The master no longer knows this stream: the driver must resubscribe.
    before = subscribes(sim)
    sim.fail_calls(403, count=3, message="Framework is not subscribed")
    await resubscribed(daemon, sim, before)


FAULTS: dict[str, Callable[[Daemon, SimulatedCluster], Awaitable[None]]] = {
    "stop_heartbeats": stop_heartbeats,
    "hang_stream": hang_stream,
    "drop_stream": drop_stream,
    "accepts_time_out": accepts_time_out,
    "accepts_fail": accepts_fail,
    "acks_time_out": acks_time_out,
    "calls_refused_403": calls_refused_403,
}


ON_POSTGRESQL = ("drop_stream", "accepts_time_out", "acks_time_out")
CASES = [(fault, "sqlite") for fault in FAULTS] + [(f, "postgresql") for f in ON_POSTGRESQL]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "backend"), CASES, indirect=["backend"])
async def test_partition_mid_launch_loses_nothing(
    tmp_path: Path, fault: str, backend: PgDatabase | None
) -> None:
    async with SimulatedCluster(agents=20, seed=5, **SIM) as sim:
        daemon = Daemon(
            tmp_path, sim.url, mesos={"request_timeout": REQUEST_TIMEOUT}, database=backend
        )
        try:
            await daemon.start()
            framework_id = await daemon.framework_id()
            body = [task_body(f"p{i}", labels={"sim.duration": "0.5"}) for i in range(TASKS)]
            ids = await daemon.submit(body)
            await sim.wait_until(lambda: launches(sim) >= 100, timeout=30)
            assert launches(sim) < TASKS - 200, "the run is nearly over before the fault"
            await FAULTS[fault](daemon, sim)
            sim.clear_call_faults()
            await audit(daemon, sim, ids)
            assert [f.id for f in sim.frameworks()] == [framework_id]
            assert daemon.alive()
            assert await daemon.close() == 0
        finally:
            await daemon.close()
