"""The usage poller against the simulated cluster, in process: the daemon's own wiring
(``build_app``), rounds run by hand (``usage.interval`` one hour) so each test decides when a
round happens, or in the background where the test is about the loop itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from corekit import Clock
from daemonkit import Daemon, running_daemon
from structlog.testing import capture_logs

from scale_scheduler.daemon.mesos.agent_usage_api import (
    AgentUsageClient,
    AgentUsageError,
    endpoint_from_offer_url,
    endpoint_from_pid,
)
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.mesos.usage_math import MIB, ContainerReading, Sample
from scale_scheduler.daemon.scheduling.usage_poller import UsagePoller
from scale_scheduler.daemon.service.config import UsageConfig
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.nodes import Node, NodeRepository
from scale_scheduler.state.store import Store
from scale_scheduler.state.tasks import Task

MANUAL = {"interval": 3600.0, "timeout": 0.5}
"""Rounds only when a test asks for one (``poll_once``)."""
BUSY = {"sim.outcome": "RUNNING", "sim.cpus_used": "0.5", "sim.mem_used": "100"}
QUIET = {"sim.outcome": "RUNNING", "sim.cpus_used": "0.25", "sim.mem_used": "50"}


def busy_task(name: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": "true", "cpus": 1, "mem": 256, "labels": labels, **extra}


async def get(daemon: Daemon, path: str) -> Any:
    response = await daemon.client.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


async def running(daemon: Daemon, ids: list[int]) -> None:
    await daemon.until(lambda: all(t.state.value == "RUNNING" for t in live(daemon, ids)))


def live(daemon: Daemon, ids: list[int]) -> list[Any]:
    tasks = daemon.core.board.tasks
    return [tasks[i] for i in ids if i in tasks]


async def two_rounds(daemon: Daemon) -> None:
    """Two rounds with CPU time accrued between them (the CPU figure needs both)."""
    usage = daemon.core.usage
    assert usage is not None
    first = await usage.poll_once()
    sim = daemon.sim
    await sim.wait_until(lambda: sim.timers.wall() >= first.sampled_at + 0.3, timeout=5)
    await usage.poll_once()


async def test_used_is_zero_before_a_round_and_the_scripted_sums_after_two(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, agents=3, usage=MANUAL) as daemon:
        ids = await daemon.submit([busy_task("busy", BUSY), busy_task("quiet", QUIET)])
        await running(daemon, ids)
        status = await get(daemon, "/status/")
        assert status["resources"]["used"] == {"cpus": 0.0, "mem": 0.0, "disk": 0.0}
        usage = await get(daemon, "/usage/")
        assert usage["sampled_at"] is None
        assert usage["age_seconds"] is None
        assert usage["agents_total"] == 0
        assert (await get(daemon, f"/tasks/{ids[0]}/"))["usage"] == {"latest": None, "samples": []}

        await two_rounds(daemon)

        used = (await get(daemon, "/status/"))["resources"]["used"]
        assert used["cpus"] == pytest.approx(0.75, rel=0.05)
        assert used["mem"] == pytest.approx(150.0, rel=0.05)
        usage = await get(daemon, "/usage/")
        assert usage["enabled"] is True
        assert usage["agents_total"] == usage["agents_answered"] == 3
        assert usage["agents_unknown"] == []
        assert usage["used"] == used
        assert usage["sampled_at"] is not None
        assert 0 <= usage["age_seconds"] < 60

        # Per task: the latest sample and the history (the first sample has no CPU figure).
        busy = (await get(daemon, f"/tasks/{ids[0]}/"))["usage"]
        assert [s["cpus"] is None for s in busy["samples"]] == [True, False]
        assert busy["latest"] == busy["samples"][-1]
        assert busy["latest"]["cpus"] == pytest.approx(0.5, rel=0.05)
        assert busy["latest"]["mem"] == pytest.approx(100.0)
        quiet = (await get(daemon, f"/tasks/{ids[1]}/"))["usage"]["latest"]
        assert quiet["cpus"] == pytest.approx(0.25, rel=0.05)

        # Per node: every node answered; its used is the sum of what runs there.
        hosts = {t.hostname for t in live(daemon, ids)}
        nodes = (await get(daemon, "/nodes/"))["results"]
        assert all(node["resources"]["used"] is not None for node in nodes)
        node_cpus = sum(node["resources"]["used"]["cpus"] for node in nodes)
        assert node_cpus == pytest.approx(0.75, rel=0.05)
        for node in nodes:
            if node["hostname"] not in hosts:
                assert node["resources"]["used"] == {"cpus": 0.0, "mem": 0.0, "disk": 0.0}
        one = await get(daemon, f"/nodes/{nodes[0]['id']}/")
        assert one["resources"]["used"] == nodes[0]["resources"]["used"]

        # The dashboard's snapshot: the cluster's used bars and the node table's used column.
        state = await get(daemon, "/dashboard/state/")
        assert state["resources"]["used"] == used
        by_host = {n["hostname"]: n["resources"]["used"] for n in state["nodes"]["items"]}
        assert by_host == {n["hostname"]: n["resources"]["used"] for n in nodes}

        samples = await daemon.scrape()
        assert samples.get("scale_scheduler_cluster_used_cpus") == pytest.approx(0.75, rel=0.05)
        assert samples.get("scale_scheduler_cluster_used_memory_bytes") == pytest.approx(
            150 * 1024 * 1024, rel=0.05
        )
        assert samples.get("scale_scheduler_usage_agents_unknown") == 0
        assert samples.get("scale_scheduler_usage_rounds_total") == 2


async def test_an_agent_that_does_not_answer_is_unknown_not_zero(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=3, usage=MANUAL) as daemon:
        ids = await daemon.submit([busy_task(f"t{i}", BUSY) for i in range(3)])
        await running(daemon, ids)
        silent = live(daemon, ids)[0].hostname
        on_silent = sum(1 for t in live(daemon, ids) if t.hostname == silent)
        assert daemon.sim.set_agent_http(silent, "silent")
        with capture_logs() as logs:
            await two_rounds(daemon)
        usage = await get(daemon, "/usage/")
        assert usage["agents_total"] == 3
        assert usage["agents_answered"] == 2
        assert usage["agents_unknown"] == [silent]
        # The others' sums, not zero, and not the silent agent's share.
        assert usage["used"]["cpus"] == pytest.approx(0.5 * (3 - on_silent), rel=0.05)
        assert usage["used"]["mem"] == pytest.approx(100.0 * (3 - on_silent), rel=0.05)
        assert (await get(daemon, "/status/"))["resources"]["used"] == usage["used"]
        node = (await get(daemon, f"/nodes/?hostname={silent}"))["results"][0]
        assert node["resources"]["used"] is None
        # Logged once for two rounds.
        unknown = [e for e in logs if e["event"] == "agent_usage_unknown"]
        assert [e["hostname"] for e in unknown] == [silent]
        assert (await daemon.scrape()).get("scale_scheduler_usage_agents_unknown") == 1

        assert daemon.sim.set_agent_http(silent, "v1")
        with capture_logs() as logs:
            await daemon.core.usage.poll_once()  # type: ignore[union-attr]
        assert (await get(daemon, "/usage/"))["agents_unknown"] == []
        assert [e["hostname"] for e in logs if e["event"] == "agent_usage_known"] == [silent]


async def test_an_old_agent_is_read_on_monitor_statistics(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=1, usage=MANUAL) as daemon:
        [agent] = daemon.sim.agents
        assert daemon.sim.set_agent_http(agent.hostname, "v0")
        ids = await daemon.submit([busy_task("old", BUSY)])
        await running(daemon, ids)
        await two_rounds(daemon)
        usage = await get(daemon, "/usage/")
        assert usage["agents_answered"] == 1
        assert usage["used"]["cpus"] == pytest.approx(0.5, rel=0.05)
        assert usage["used"]["mem"] == pytest.approx(100.0)
        latest = (await get(daemon, f"/tasks/{ids[0]}/"))["usage"]["latest"]
        assert latest["cpus"] == pytest.approx(0.5, rel=0.05)
        # The 404 to the v1 call is remembered: later rounds go to /monitor/statistics only.
        assert agent.http_requests["api/v1"] == 1
        assert agent.http_requests["monitor/statistics"] == 2


async def test_the_framework_credentials_are_sent_to_the_agents(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    async with running_daemon(
        tmp_path,
        agents=2,
        sim={"credentials": (("scale", "s3cret"),)},
        mesos={"principal": "scale", "secret_file": str(secret)},
        usage=MANUAL,
    ) as daemon:
        ids = await daemon.submit([busy_task("auth", BUSY)])
        await running(daemon, ids)
        await two_rounds(daemon)
        usage = await get(daemon, "/usage/")
        assert usage["agents_answered"] == 2
        assert usage["used"]["cpus"] == pytest.approx(0.5, rel=0.05)
        # Without them the agents refuse: the poller's answers above needed them.
        endpoint = daemon.core.nodes.by_hostname[live(daemon, ids)[0].hostname].agent_endpoint
        assert endpoint is not None
        async with aiohttp.ClientSession() as session:
            anonymous = AgentUsageClient(lambda: session, lambda: None, 2.0)
            with pytest.raises(AgentUsageError, match="401"):
                await anonymous.fetch(endpoint)


async def test_rounds_run_in_the_background_every_interval(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=2, usage={"interval": 0.1}) as daemon:
        ids = await daemon.submit([busy_task("bg", BUSY)])
        await running(daemon, ids)

        def cpus() -> float:
            usage = daemon.core.usage
            used = usage.used() if usage is not None else None
            return used.cpus if used is not None else 0.0

        await daemon.until(lambda: cpus() > 0.4, timeout=10)
        status = await get(daemon, "/status/")
        assert status["resources"]["used"]["cpus"] == pytest.approx(0.5, rel=0.05)


async def test_interval_zero_keeps_zeros(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=1, usage={"interval": 0}) as daemon:
        ids = await daemon.submit([busy_task("off", BUSY)])
        await running(daemon, ids)
        assert daemon.core.usage is None
        status = await get(daemon, "/status/")
        assert status["resources"]["used"] == {"cpus": 0.0, "mem": 0.0, "disk": 0.0}
        usage = await get(daemon, "/usage/")
        assert usage["enabled"] is False
        assert usage["sampled_at"] is None
        assert (await get(daemon, f"/tasks/{ids[0]}/"))["usage"]["latest"] is None
        samples = await daemon.scrape()
        assert not samples.find("scale_scheduler_cluster_used_cpus")


# -- an agent that answers garbage ---------------------------------------------------------


@pytest.fixture
async def garbage_agent() -> AsyncIterator[str]:
    """An agent endpoint answering 200 with something that is not GET_CONTAINERS."""

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(
            body=b'{"type": "GET_CONTAINERS", "get_containers": [1, 2',
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_post("/slave(1)/api/v1", garbage)
    server = TestServer(app)
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}/slave(1)"
    finally:
        await server.close()


async def test_garbage_is_logged_once_and_the_poller_goes_on(
    garbage_agent: str, tmp_path: Path
) -> None:
    store = await Store.open(tmp_path / "state.db")
    try:
        nodes = NodeRepository(store, lambda: 0.0)
        nodes.by_id[1] = Node(1, "junk", "a1", online=True, agent_endpoint=garbage_agent)
        async with aiohttp.ClientSession() as session:
            client = AgentUsageClient(lambda: session, lambda: None, 2.0)
            poller = UsagePoller(UsageConfig(), nodes, {}, client, lambda: "fw")
            with capture_logs() as logs:
                first = await poller.poll_once()
                second = await poller.poll_once()
    finally:
        await store.close()
    assert first.agents_unknown == second.agents_unknown == ("junk",)
    assert poller.used() is None
    warnings = [e for e in logs if e["event"] == "agent_usage_unknown"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "not understood" in warnings[0]["error"]


# -- agent addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "endpoint"),
    [
        (
            b'{"scheme":"http","address":{"hostname":"a1","ip":"10.0.0.5","port":5051},'
            b'"path":"/slave(1)"}',
            "http://10.0.0.5:5051/slave(1)",
        ),
        (
            b'{"address":{"hostname":"a1","port":5051},"path":"/slave(2)"}',
            "http://a1:5051/slave(2)",
        ),
        (b'{"address":{"ip":"::1","port":5051},"path":"/slave(1)"}', "http://[::1]:5051/slave(1)"),
        (b'{"address":{"ip":"10.0.0.5","port":5051}}', "http://10.0.0.5:5051"),
        (b"null", None),
        (b'{"address":{"ip":"10.0.0.5"}}', None),
        (b'{"scheme":"file","address":{"ip":"h","port":1}}', None),
        (b'{"address":{"ip":"evil/x","port":1}}', None),
        (b"[1]", None),
    ],
)
def test_endpoint_from_offer_url(raw: bytes, endpoint: str | None) -> None:
    assert endpoint_from_offer_url(raw) == endpoint


@pytest.mark.parametrize(
    ("pid", "endpoint"),
    [
        ("slave(1)@10.0.0.5:5051", "http://10.0.0.5:5051/slave(1)"),
        ("slave(3)@[::1]:5051", "http://[::1]:5051/slave(3)"),
        ("slave(1)@10.0.0.5", None),
        ("10.0.0.5:5051", None),
        ("slave(1)@10.0.0.5:port", None),
    ],
)
def test_endpoint_from_pid(pid: str, endpoint: str | None) -> None:
    assert endpoint_from_pid(pid) == endpoint


# -- the join of containers to tasks -------------------------------------------------------------


class ScriptedAgents(AgentUsageClient):
    """Answers every agent with the readings a test sets (no I/O)."""

    def __init__(self) -> None:
        super().__init__(lambda: None, lambda: None, 1.0)  # type: ignore[arg-type,return-value]
        self.readings: list[ContainerReading] = []

    async def fetch(self, endpoint: str) -> list[ContainerReading]:
        return list(self.readings)


async def test_a_task_is_found_by_the_container_id_its_updates_carry(tmp_path: Path) -> None:
    """An executor whose id is not the task's (not the command executor): the container id
    from the task's status update names the task."""
    store = await Store.open(tmp_path / "state.db")
    try:
        nodes = NodeRepository(store, lambda: 0.0)
        nodes.by_id[1] = Node(1, "h1", "a1", online=True, agent_endpoint="http://h1:5051/slave(1)")
        task = Task(
            id=7,
            priority=1,
            shape=Shape(1.0, 64.0),
            spec=b"{}",
            state=TaskState.RUNNING,
            max_attempts=1,
            attempts=2,
        )
        agents = ScriptedAgents()
        clock = Clock()
        poller = UsagePoller(UsageConfig(), nodes, {7: task}, agents, lambda: "fw", clock)
        poller.note_status(
            msgspec.convert(
                {
                    "task_id": {"value": "7-2"},
                    "state": "TASK_RUNNING",
                    "container_status": {"container_id": {"value": "c-1"}},
                },
                TaskStatus,
            )
        )

        def reading(ts: float, cpu: float) -> ContainerReading:
            sample = Sample(ts, cpu, 10 * MIB, None)
            return ContainerReading("c-1", "fw", "custom-executor", "c-1", sample)

        agents.readings = [reading(0.0, 0.0)]
        await poller.poll_once()
        clock.advance(10)
        agents.readings = [reading(10.0, 2.5)]
        await poller.poll_once()
        # An earlier attempt's container, and another framework's, are not this task's.
        agents.readings = [
            ContainerReading("old", "fw", "7-1", None, Sample(20.0, 1.0, MIB, None)),
            ContainerReading("c-9", "other", "7-2", "c-9", Sample(20.0, 1.0, MIB, None)),
        ]
        clock.advance(10)
        await poller.poll_once()
    finally:
        await store.close()
    samples = poller.task_samples(7)
    assert [(s.cpus, s.mem) for s in samples] == [(None, 10.0), (0.25, 10.0)]


class TimedAgents(ScriptedAgents):
    """Notes the loop's time of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    async def fetch(self, endpoint: str) -> list[ContainerReading]:
        self.asked.append(asyncio.get_running_loop().time())
        return []


async def test_a_round_spreads_its_requests_over_the_spread(tmp_path: Path) -> None:
    """The n-th of N requests waits for n/N of the spread: a round over thousands of agents
    does not take the loop from the offer path in one burst."""
    store = await Store.open(tmp_path / "state.db")
    try:
        nodes = NodeRepository(store, lambda: 0.0)
        for i in range(1, 6):
            nodes.by_id[i] = Node(
                i, f"h{i}", f"a{i}", online=True, agent_endpoint=f"http://h{i}:5051/slave(1)"
            )
        agents = TimedAgents()
        poller = UsagePoller(UsageConfig(concurrency=5), nodes, {}, agents, lambda: "fw")
        begun = asyncio.get_running_loop().time()
        snapshot = await poller.poll_once(spread=0.25)
    finally:
        await store.close()
    assert snapshot.agents_answered == 5
    offsets = [t - begun for t in agents.asked]
    assert offsets == sorted(offsets)
    # Not before its slot (0, 0.05, 0.1, 0.15, 0.2 s), whatever the five workers could do at once.
    assert all(offset >= 0.05 * n - 0.005 for n, offset in enumerate(offsets))
    assert offsets[-1] >= 0.195
