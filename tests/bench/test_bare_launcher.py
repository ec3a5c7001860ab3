"""B2's peer (bench/bare_launcher.py) fills each offer with as many tasks as fit, no more."""

from __future__ import annotations

from typing import Any

import msgspec

from bench.bare_launcher import IDLE_REFUSE_SECONDS, REFUSE_SECONDS, Launcher


def _offer(cpus: float, mem: float, agent: str = "a1") -> dict[str, Any]:
    resources = [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}, "role": "*"},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}, "role": "*"},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 9}]}},
    ]
    return {
        "id": {"value": f"O-{agent}"},
        "agent_id": {"value": agent},
        "resources": resources,
        "allocation_info": {"role": "*"},
    }


def test_an_offer_takes_as_many_tasks_as_its_cpus_and_mem_hold() -> None:
    launcher = Launcher(tasks=100, cpus=1.0, mem=128.0)
    assert launcher.fits(_offer(cpus=32, mem=131072)) == 32
    assert launcher.fits(_offer(cpus=32, mem=1000)) == 7  # mem binds: 7 x 128 <= 1000
    assert launcher.fits(_offer(cpus=0.5, mem=131072)) == 0


def test_the_accept_launches_the_next_tasks_on_the_offer_and_counts_them_out() -> None:
    launcher = Launcher(tasks=40, cpus=1.0, mem=128.0)
    launcher.framework_id = "fw"
    first = msgspec.json.decode(launcher.accept(_offer(32, 131072, "a1"), 32))
    assert first["type"] == "ACCEPT"
    assert first["accept"]["offer_ids"] == [{"value": "O-a1"}]
    assert first["accept"]["filters"] == {"refuse_seconds": REFUSE_SECONDS}
    infos = first["accept"]["operations"][0]["launch"]["task_infos"]
    assert [info["task_id"]["value"] for info in infos[:2]] == ["bare-0000000", "bare-0000001"]
    assert {info["agent_id"]["value"] for info in infos} == {"a1"}
    assert infos[0]["resources"][0]["allocation_info"] == {"role": "*"}
    assert launcher.remaining == 8
    assert launcher.fits(_offer(32, 131072, "a2")) == 8  # never more than remain
    launcher.accept(_offer(32, 131072, "a2"), 8)
    assert launcher.remaining == 0
    decline = msgspec.json.decode(launcher.decline([_offer(32, 131072, "a3")]))
    assert decline["decline"]["filters"] == {"refuse_seconds": IDLE_REFUSE_SECONDS}


def test_updates_are_counted_and_acknowledged_when_they_carry_a_uuid() -> None:
    launcher = Launcher(tasks=2, cpus=1.0, mem=128.0)
    launcher.framework_id = "fw"
    running = {
        "task_id": {"value": "bare-0000000"},
        "agent_id": {"value": "a1"},
        "state": "TASK_RUNNING",
        "uuid": "AAAAAAAAAAAAAAAAAAAAAA==",
    }
    call = launcher.acknowledge(running)
    assert call is not None
    body = msgspec.json.decode(call)
    assert body["acknowledge"] == {
        "agent_id": {"value": "a1"},
        "task_id": {"value": "bare-0000000"},
        "uuid": "AAAAAAAAAAAAAAAAAAAAAA==",
    }
    reconciled = {"task_id": {"value": "bare-0000001"}, "state": "TASK_ERROR"}
    assert launcher.acknowledge(reconciled) is None
    assert launcher.seen == {"bare-0000000"}
    assert launcher.failed == {"bare-0000001"}
