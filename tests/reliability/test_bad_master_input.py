"""Bad input from the master, in the middle of launches: a malformed RecordIO length, a record
over the size cap (announced or real), invalid JSON, an unknown event type, and an offer with
resource kinds the scheduler does not know. Each is logged with its context; a broken stream is
resubscribed, a bad item is skipped; the daemon stays up, keeps launching, and at the end every
task is accounted for exactly once.

Every case runs on SQLite; on PostgreSQL, the two that reach the state (a broken stream that is
resubscribed mid-launch, and an odd offer partly used), to keep the scenario's cost in CI
bounded: parsing the master's stream does not depend on the state backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, audit, launches, task_body

from scale_scheduler.simulator import SimulatedCluster

TASKS = 600
MAX_RECORD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Case:
    kind: str
    event: str  # what the daemon logs
    context: tuple[str, ...]  # fields that event must carry
    resubscribes: bool
    size: int | None = None


CASES = [
    Case("bad_length", "mesos_stream_corrupt", ("master", "error"), True),
    Case("oversize", "mesos_stream_corrupt", ("master", "error"), True, 2 * MAX_RECORD_BYTES),
    Case("oversize_header", "mesos_stream_corrupt", ("master", "error"), True),
    Case(
        "invalid_json", "mesos_event_undecodable", ("master", "record", "error", "preview"), False
    ),
    Case("unknown_event", "mesos_event_unknown", ("master", "type"), False),
    Case(
        "unknown_resource_offer",
        "offer_resources_ignored",
        ("names", "offer_id", "agent_id", "hostname"),
        False,
    ),
]


def spy_on_accepts(sim: SimulatedCluster) -> list[str]:
    """Offer ids of every ACCEPT the leading master handles, in order."""
    leader = sim.leader
    assert leader is not None
    accepted: list[str] = []
    handle = leader.handle_call

    def handle_call(fw: Any, call_type: str, call: dict[str, Any]) -> Any:
        if call_type == "ACCEPT":
            accepted.extend(o["value"] for o in call["accept"]["offer_ids"])
        return handle(fw, call_type, call)

    leader.handle_call = handle_call  # type: ignore[method-assign]
    return accepted


ON_POSTGRESQL = ("bad_length", "unknown_resource_offer")
RUNS = [pytest.param(c, "sqlite", id=f"{c.kind}-sqlite") for c in CASES] + [
    pytest.param(c, "postgresql", id=f"{c.kind}-postgresql")
    for c in CASES
    if c.kind in ON_POSTGRESQL
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "backend"), RUNS, indirect=["backend"])
async def test_bad_input_is_logged_and_survived(
    tmp_path: Path, case: Case, backend: PgDatabase | None
) -> None:
    async with SimulatedCluster(agents=20, seed=6, **SIM) as sim:
        daemon = Daemon(
            tmp_path, sim.url, mesos={"max_record_bytes": MAX_RECORD_BYTES}, database=backend
        )
        try:
            await daemon.start()
            accepted = spy_on_accepts(sim)
            body = [task_body(f"b{i}", labels={"sim.duration": "0.5"}) for i in range(TASKS)]
            ids = await daemon.submit(body)
            await sim.wait_until(lambda: launches(sim) >= 100, timeout=30)
            assert launches(sim) < TASKS - 200, "the run is nearly over before the fault"
            subscribes = sim.record.calls["SUBSCRIBE"]
            offers_before = {o["id"]["value"] for o in sim.offers()}
            if case.kind == "unknown_resource_offer":
                sim.add_agent()  # every agent is busy: this one is free for the odd offer
            assert sim.inject(case.kind, size=case.size) == 1
            injected = [o for o in sim.offers() if o["id"]["value"] not in offers_before]

            await sim.wait_until(lambda: daemon.events(case.event), timeout=10)
            logged = daemon.events(case.event)[0]
            assert logged["level"] in ("warning", "error")
            assert all(logged.get(key) for key in case.context), logged
            if case.resubscribes:
                await sim.wait_until(lambda: sim.record.calls["SUBSCRIBE"] > subscribes)
                await daemon.wait_subscribed()
            else:
                await asyncio.sleep(0.5)  # nothing may happen: no resubscribe (back-off 0.05 s)
                assert sim.record.calls["SUBSCRIBE"] == subscribes
                assert daemon.events("scheduler_disconnected") == []
            if case.kind == "unknown_resource_offer":
                # The offer is used for what the scheduler knows; the rest is left alone.
                (offer,) = injected
                assert logged["offer_id"] == offer["id"]["value"]
                assert sorted(logged["names"]) == ["fpgas", "licenses"]
                await sim.wait_until(lambda: offer["id"]["value"] in accepted, timeout=10)
            mark = launches(sim)
            await sim.wait_until(lambda: launches(sim) > mark, timeout=10)  # still launching
            assert daemon.alive()

            await audit(daemon, sim, ids)
            assert len(daemon.events(case.event)) == 1
            assert await daemon.close() == 0
        finally:
            await daemon.close()
