"""Placement constraints end to end: the API, the daemon and the simulated cluster, whose agents
carry attributes (``rack`` r0..r3, ``zone`` z0..z4). One test per operator, as Marathon
documents it, plus the 400s of constraints that cannot be used."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import Daemon, running_daemon, task

from scale_scheduler.simulator.config import AgentSpec
from scale_scheduler.state.domain import TaskState

AGENTS = 25
SIM = {"seed": 7, "agent": AgentSpec(attributes=(("rack", "r{i%4}"), ("zone", "z{i%5}")))}
LONG = {"sim.duration": "120"}  # tasks stay live while the test looks at where they are


def index_of(hostname: str) -> int:
    return int(hostname.rsplit("-", 1)[1])


def rack_of(hostname: str) -> str:
    return f"r{index_of(hostname) % 4}"


def zone_of(hostname: str) -> str:
    return f"z{index_of(hostname) % 5}"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path, agents=AGENTS, sim=SIM) as d:
        yield d


def grouped(
    name: str, group: str, constraints: list[list[str]], count: int
) -> list[dict[str, Any]]:
    return [
        task(f"{name}{i}", group=group, constraints=constraints, labels=LONG) for i in range(count)
    ]


async def running_hosts(daemon: Daemon, ids: list[int]) -> list[str]:
    """The hostnames of ``ids`` once every one of them runs."""
    tasks = daemon.core.board.tasks

    def all_running() -> bool:
        return all(
            (found := tasks.get(task_id)) is not None and found.state is TaskState.RUNNING
            for task_id in ids
        )

    await daemon.until(all_running, timeout=30)
    hosts = [tasks[task_id].hostname for task_id in ids]
    assert all(hosts)
    return [host for host in hosts if host is not None]


async def test_unique_hostname_puts_twenty_tasks_on_twenty_agents(daemon: Daemon) -> None:
    ids = await daemon.submit(grouped("u", "etl", [["hostname", "UNIQUE"]], 20))
    hosts = await running_hosts(daemon, ids)
    assert len(set(hosts)) == 20
    view = await daemon.task(ids[0])
    assert view["group"] == "etl"
    assert view["constraints"] == [["hostname", "UNIQUE"]]


async def test_unique_hostname_leaves_the_rest_waiting_and_names_the_constraint(
    daemon: Daemon,
) -> None:
    ids = await daemon.submit(grouped("u", "etl", [["hostname", "UNIQUE"]], AGENTS + 3))
    tasks = daemon.core.board.tasks
    await daemon.until(
        lambda: sum(tasks[i].state is TaskState.RUNNING for i in ids if i in tasks) == AGENTS
    )
    waiting = [i for i in ids if tasks[i].state is TaskState.QUEUED]
    assert len(waiting) == 3
    expected = "UNIQUE hostname: every offering host already runs a task of group etl"
    board = daemon.core.board
    await daemon.until(lambda: board.waiting_reason(tasks[waiting[0]], False) == expected)
    assert (await daemon.task(waiting[0]))["waiting_reason"] == expected
    hosts = [tasks[i].hostname for i in ids if tasks[i].state is TaskState.RUNNING]
    assert len(set(hosts)) == AGENTS


async def test_group_by_rack_spreads_forty_tasks_evenly(daemon: Daemon) -> None:
    ids = await daemon.submit(grouped("g", "spread", [["rack", "GROUP_BY", "4"]], 40))
    hosts = await running_hosts(daemon, ids)
    assert Counter(rack_of(host) for host in hosts) == {"r0": 10, "r1": 10, "r2": 10, "r3": 10}


async def test_max_per_never_exceeds_its_bound(daemon: Daemon) -> None:
    # One batch, so one offer pass sees all twelve: the bound holds inside the pass too.
    ids = await daemon.submit(grouped("m", "capped", [["rack", "MAX_PER", "2"]], 12))
    tasks = daemon.core.board.tasks
    await daemon.until(
        lambda: sum(tasks[i].state is TaskState.RUNNING for i in ids if i in tasks) == 8
    )
    running = [tasks[i].hostname or "" for i in ids if tasks[i].state is not TaskState.QUEUED]
    assert Counter(rack_of(host) for host in running) == {"r0": 2, "r1": 2, "r2": 2, "r3": 2}
    launches = sum(daemon.sim.record.launch_counts.values())
    assert launches == 8
    queued = [i for i in ids if tasks[i].state is TaskState.QUEUED]
    assert len(queued) == 4


async def test_cluster_without_a_value_follows_the_first_placement(daemon: Daemon) -> None:
    first = await daemon.submit(grouped("c", "together", [["rack", "CLUSTER"]], 1))
    (host,) = await running_hosts(daemon, first)
    more = await daemon.submit(grouped("c", "together", [["rack", "CLUSTER"]], 12))
    hosts = await running_hosts(daemon, more)
    assert {rack_of(h) for h in hosts} == {rack_of(host)}
    assert len(set(hosts)) > 1  # the rack, not the host: 12 tasks spread over its agents


async def test_like_unlike_and_is_filter_agents(daemon: Daemon) -> None:
    like = await daemon.submit(
        [task(f"l{i}", constraints=[["zone", "LIKE", "z[01]"]], labels=LONG) for i in range(10)]
    )
    unlike = await daemon.submit(
        [task(f"n{i}", constraints=[["zone", "UNLIKE", "z[0-3]"]], labels=LONG) for i in range(10)]
    )
    listed_is = await daemon.submit(
        [task(f"i{i}", constraints=[["rack", "IS", "r2"]], labels=LONG) for i in range(5)]
    )
    shorthand = await daemon.submit(
        [task(f"s{i}", constraints={"rack": "r3"}, labels=LONG) for i in range(5)]
    )
    host_like = await daemon.submit(
        [task("h", constraints=[["hostname", "LIKE", "sim-agent-1[0-9]"]], labels=LONG)]
    )
    missing = await daemon.submit(
        [
            task("absent-like", constraints=[["os", "LIKE", ".*"]], labels=LONG),
            task("absent-unlike", constraints=[["os", "UNLIKE", "linux"]], labels=LONG),
        ]
    )
    assert {zone_of(h) for h in await running_hosts(daemon, like)} <= {"z0", "z1"}
    assert {zone_of(h) for h in await running_hosts(daemon, unlike)} == {"z4"}
    assert {rack_of(h) for h in await running_hosts(daemon, listed_is)} == {"r2"}
    assert {rack_of(h) for h in await running_hosts(daemon, shorthand)} == {"r3"}
    (host,) = await running_hosts(daemon, host_like)
    assert 10 <= index_of(host) <= 19
    # Where the agent lacks the attribute, only UNLIKE matches.
    await running_hosts(daemon, missing[1:])
    view = await daemon.task(missing[0])
    assert view["state"] == "QUEUED"
    assert view["constraints"] == [["os", "LIKE", ".*"]]
    shorthand_view = await daemon.task(shorthand[0])
    assert shorthand_view["constraints"] == [["rack", "IS", "r3"]]
    assert shorthand_view["group"] is None


BAD = [
    ({"constraints": [["rack", "NEAR", "r1"]]}, "unknown operator 'NEAR'"),
    ({"constraints": [["rack", "LIKE"]]}, "LIKE needs a value"),
    ({"constraints": [["rack", "LIKE", "r[1"]]}, "does not compile"),
    ({"constraints": [["rack", "GROUP_BY", "0"]], "group": "g"}, "whole number >= 1"),
    ({"constraints": [["rack", "MAX_PER", "x"]], "group": "g"}, "whole number >= 1"),
    ({"constraints": [["hostname", "UNIQUE"]]}, "the task needs a group"),
]


async def test_bad_constraints_get_400_naming_them(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=1) as daemon:
        for extra, named in BAD:
            response = await daemon.client.post("/queue/", json=task("bad", **extra))
            assert response.status == 400
            assert response.content_type == "text/plain"
            text = await response.text()
            assert "Field 'constraints' is invalid" in text, text
            assert f"constraint {extra['constraints'][0]}" in text, text
            assert named in text, text
            batch = [task("good"), task("bad", **extra)]
            response = await daemon.client.post("/queue/", json=batch)
            assert response.status == 400
            assert "(task at index 1 of the batch)" in await response.text()
        assert daemon.core.queue_depth == 0
