"""``GET /metrics``: exposition, per-app registries, request latency by route template, database
commits, event-loop lag, and counts that equal what happened in a run against the simulator."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from daemonkit import eventually
from obskit import SIM, Client, Daemon, Samples, daemon_config, scrape, task

from scale_scheduler.api.app import build_app
from scale_scheduler.api.metrics import METRICS
from scale_scheduler.daemon.mesos.driver import Launch
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.simulator import AgentSpec, SimulatedCluster

ClientFactory = Callable[[web.Application], Awaitable[Client]]

FAMILIES = {
    "scale_scheduler_offers_received": "counter",
    "scale_scheduler_offers_accepted": "counter",
    "scale_scheduler_offers_declined": "counter",
    "scale_scheduler_offers_rescinded": "counter",
    "scale_scheduler_offer_passes": "counter",
    "scale_scheduler_offers_suppressed": "gauge",
    "scale_scheduler_task_launches": "counter",
    "scale_scheduler_task_launches_reverted": "counter",
    "scale_scheduler_task_launches_unconfirmed": "counter",
    "scale_scheduler_status_updates_stale": "counter",
    "scale_scheduler_tasks": "gauge",
    "scale_scheduler_tasks_ended": "counter",
    "scale_scheduler_queue_depth": "gauge",
    "scale_scheduler_scheduler_paused": "gauge",
    "scale_scheduler_nodes": "gauge",
    "scale_scheduler_mesos_connection_state": "gauge",
    "scale_scheduler_mesos_master_online": "gauge",
    "scale_scheduler_mesos_subscriptions": "counter",
    "scale_scheduler_mesos_reconnects": "counter",
    "scale_scheduler_reconciliation_rounds": "counter",
    "scale_scheduler_status_updates": "counter",
    "scale_scheduler_status_acknowledgements": "counter",
    "scale_scheduler_api_request_duration_seconds": "histogram",
    "scale_scheduler_database_commit_duration_seconds": "histogram",
    "scale_scheduler_database_commit_group_size": "histogram",
    "scale_scheduler_event_loop_lag_seconds": "histogram",
    "process_resident_memory_bytes": "gauge",
}


@pytest.fixture
async def client(make_config: Callable[..., Config], aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(build_app(make_config(), connect_mesos=False))


async def test_every_family_is_exposed_with_its_type(client: Client) -> None:
    samples = await scrape(client)
    for name, kind in FAMILIES.items():
        assert samples.types.get(name) == kind, name
    assert samples.get("scale_scheduler_queue_depth") == 0
    assert samples.get("scale_scheduler_mesos_connection_state", state="DISCONNECTED") == 1
    assert samples.get("scale_scheduler_mesos_connection_state", state="SUBSCRIBED") == 0
    assert samples.get("scale_scheduler_tasks", state="QUEUED") == 0
    # Unknown totals are left out rather than exported as zero.
    assert "scale_scheduler_cluster_cpus" not in samples.types


async def test_openmetrics_when_asked(client: Client) -> None:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def test_two_apps_in_one_process_keep_separate_registries(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    first = await aiohttp_client(build_app(make_config(), connect_mesos=False))
    other_db = {"path": str(tmp_path / "other.db")}
    second = await aiohttp_client(build_app(make_config(state=other_db), connect_mesos=False))
    for _ in range(3):
        assert (await first.get("/scheduler/")).status == 200
    one, two = await scrape(first), await scrape(second)
    route = {"route": "/scheduler/", "method": "GET", "status": "200"}
    assert one.get("scale_scheduler_api_request_duration_seconds_count", **route) == 3
    assert two.find("scale_scheduler_api_request_duration_seconds_count", route="/scheduler/") == []


async def test_request_latency_is_labelled_by_route_template_and_status(client: Client) -> None:
    for task_id in (1, 2, 3):
        assert (await client.get(f"/tasks/{task_id}/")).status in (404, 500)
    assert (await client.get("/no/such/page/")).status == 404
    assert (await client.patch("/scheduler/", json={"bogus": 1})).status == 400
    samples = await scrape(client)
    by_route = samples.find("scale_scheduler_api_request_duration_seconds_count")
    routes = {labels["route"] for labels, _value in by_route}
    assert "/tasks/{task_id}/" in routes
    assert not any(route.startswith("/tasks/1") for route in routes)  # never the raw path
    assert "unmatched" in routes
    assert "/no/such/page/" not in routes
    tasks = samples.find(
        "scale_scheduler_api_request_duration_seconds_count", route="/tasks/{task_id}/"
    )
    assert sum(value for _labels, value in tasks) == 3
    assert (
        samples.get(
            "scale_scheduler_api_request_duration_seconds_count",
            route="/scheduler/",
            method="PATCH",
            status="400",
        )
        == 1
    )


async def test_database_commits_are_observed(client: Client) -> None:
    before = await scrape(client)
    for paused in (True, False, True):
        response = await client.patch("/scheduler/", json={"is_paused": paused})
        assert response.status == 201
    after = await scrape(client)
    for name in (
        "scale_scheduler_database_commit_duration_seconds_count",
        "scale_scheduler_database_commit_group_size_count",
        "scale_scheduler_database_commit_group_size_sum",  # one write per commit here
    ):
        assert after.get(name) - before.get(name) == 3, name
    assert after.get("scale_scheduler_scheduler_paused") == 1


LAG = "scale_scheduler_event_loop_lag_seconds"


async def test_event_loop_lag_is_measured(
    make_config: Callable[..., Config], aiohttp_client: ClientFactory
) -> None:
    app = build_app(make_config(), connect_mesos=False)
    metrics = app[METRICS]
    metrics.loop_lag_interval = 0.02
    client = await aiohttp_client(app)

    def probes() -> tuple[float, float]:
        """Lag probes so far, and those within 0.1 s (from the histogram itself)."""
        values = {
            (s.name, s.labels.get("le")): s.value for s in metrics.loop_lag.collect()[0].samples
        }
        return values[(f"{LAG}_count", None)], values[(f"{LAG}_bucket", "0.1")]

    await eventually(lambda: probes()[0] >= 1)  # the probe runs
    time.sleep(0.3)  # noqa: ASYNC251 - not a wait: blocks the loop, the lag to measure
    await eventually(lambda: probes()[1] < probes()[0])  # the blocked stretch was probed
    blocked = probes()[0]
    await eventually(lambda: probes()[0] > blocked)  # and one probe after it
    samples = await scrape(client)
    count = samples.get(f"{LAG}_count")
    within_100ms = samples.get(f"{LAG}_bucket", le="0.1")
    assert count >= 2
    assert within_100ms < count  # the blocked stretch landed above 0.1 s
    assert metrics.last_loop_lag < 0.25  # and later probes are back on time
    health = await client.get("/healthz")
    assert "event loop lag" in await health.text()


# --- a run against the simulator ---------------------------------------------------------------


class Spy:
    """Counts, at the driver boundary, what the daemon really sent and got."""

    def __init__(self, daemon: Daemon) -> None:
        core = daemon.core
        driver = core.driver
        self.accepted_offers = 0
        self.declined_offers = 0
        self.launched = 0
        self.refused_tasks = 0
        self.updates = 0
        self.updates_to_acknowledge = 0  # those with a uuid
        accept, decline, on_update = driver.accept, driver.decline, core.on_update

        async def spy_accept(launch: Launch, refuse_seconds: float | None = None) -> None:
            try:
                await accept(launch, refuse_seconds)
            except Exception:
                self.refused_tasks += len(launch.tasks)
                raise
            self.accepted_offers += len(launch.offer_ids)
            self.launched += len(launch.tasks)

        async def spy_decline(offer_ids: Any, refuse_seconds: float | None = None) -> None:
            await decline(offer_ids, refuse_seconds)
            self.declined_offers += len(offer_ids)

        def spy_update(status: TaskStatus) -> None:
            self.updates += 1
            self.updates_to_acknowledge += status.uuid is not None
            on_update(status)

        driver.accept = spy_accept  # type: ignore[method-assign]
        driver.decline = spy_decline  # type: ignore[method-assign]
        core.on_update = spy_update  # type: ignore[method-assign]


async def test_counts_equal_what_happened_in_a_simulated_run(tmp_path: Path) -> None:
    async with SimulatedCluster(agents=3, agent=AgentSpec(cpus=2, mem=4096), **SIM) as sim:
        daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
        await daemon.start(wait_subscribed=False)
        try:
            core = daemon.core
            spy = Spy(daemon)  # before the subscription: it sees every offer and update
            await daemon.until(lambda: core.driver.status.subscribed)
            client = daemon.client
            assert (await client.patch("/scheduler/", json={"is_paused": True})).status == 201
            ok = await daemon.submit([task(f"ok{i}") for i in range(14)])
            failing = await daemon.submit(
                [task(f"bad{i}", labels={"sim.outcome": "FAILED"}) for i in range(3)]
            )
            cancelled = await daemon.submit([task(f"gone{i}") for i in range(2)])
            for task_id in cancelled:
                assert (await client.delete(f"/tasks/{task_id}/")).status == 200
            queued = await daemon.scrape()
            assert queued.get("scale_scheduler_queue_depth") == 17
            assert queued.get("scale_scheduler_tasks", state="QUEUED") == 17
            assert queued.get("scale_scheduler_scheduler_paused") == 1
            assert (await client.patch("/scheduler/", json={"is_paused": False})).status == 201

            await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks)
            await daemon.until(lambda: core.pipeline.suppressed and not sim.offers())
            await daemon.until(lambda: spy.updates == core.intake.updates_handled)
            # The acknowledgements of the last updates have reached the master and are counted.
            await daemon.until(
                lambda: (
                    sim.record.calls["ACKNOWLEDGE"]
                    == spy.updates_to_acknowledge
                    == core.intake.acks.sent
                )
            )
            samples = await daemon.scrape()

            launches = sum(sim.record.launch_counts.values())
            assert launches == len(ok) + len(failing) == spy.launched
            assert samples.get("scale_scheduler_task_launches_total") == launches
            assert samples.get("scale_scheduler_tasks_ended_total", state="FINISHED") == len(ok)
            assert samples.get("scale_scheduler_tasks_ended_total", state="FAILED") == 3
            assert samples.get("scale_scheduler_tasks_ended_total", state="CANCELED") == 2
            assert samples.get("scale_scheduler_tasks_ended_total", state="LOST") == 0
            for state in ("QUEUED", "LAUNCHING", "STAGING", "STARTING", "RUNNING", "KILLING"):
                assert samples.get("scale_scheduler_tasks", state=state) == 0, state
            assert samples.get("scale_scheduler_queue_depth") == 0

            received = samples.get("scale_scheduler_offers_received_total")
            accepted = samples.get("scale_scheduler_offers_accepted_total")
            declined = samples.get("scale_scheduler_offers_declined_total")
            assert accepted == spy.accepted_offers > 0
            assert declined == spy.declined_offers
            assert received == accepted + declined  # no offer held, none rescinded
            assert samples.get("scale_scheduler_offers_rescinded_total") == 0
            assert samples.get("scale_scheduler_offers_suppressed") == 1

            assert samples.get("scale_scheduler_status_updates_total") == spy.updates > 0
            assert (
                samples.get("scale_scheduler_status_acknowledgements_total")
                == sim.record.calls["ACKNOWLEDGE"]
                > 0
            )
            assert samples.get("scale_scheduler_reconciliation_rounds_total") == 1
            assert samples.get("scale_scheduler_mesos_subscriptions_total") == 1
            assert samples.get("scale_scheduler_mesos_reconnects_total") == 0
            assert samples.get("scale_scheduler_mesos_connection_state", state="SUBSCRIBED") == 1
            assert samples.get("scale_scheduler_mesos_master_online") == 1
            await daemon.until(lambda: core.nodes.totals()[0] is not None)
            samples = await daemon.scrape()
            assert samples.get("scale_scheduler_cluster_cpus") == 6
            assert samples.get("scale_scheduler_cluster_memory_bytes") == 3 * 4096 * 1024 * 1024
            assert samples.get("scale_scheduler_scheduled_cpus") == 0
            assert samples.get("scale_scheduler_nodes", state="READY") == 3

            # The master drops the stream: a reconnect, a second subscription, a second round.
            sim.close_stream()
            await daemon.until(lambda: core.driver.status.subscriptions == 2)
            await daemon.until(lambda: core.reconciler.rounds == 2)
            samples = await daemon.scrape()
            assert samples.get("scale_scheduler_mesos_subscriptions_total") == 2
            assert samples.get("scale_scheduler_mesos_reconnects_total") == 1
            assert samples.get("scale_scheduler_reconciliation_rounds_total") == 2
        finally:
            await daemon.stop()


async def test_reverted_launches_are_counted(tmp_path: Path) -> None:
    async with SimulatedCluster(agents=2, **SIM) as sim:
        daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
        await daemon.start(wait_subscribed=False)
        try:
            core = daemon.core
            spy = Spy(daemon)
            await daemon.until(lambda: core.driver.status.subscribed)
            sim.fail_calls(400, "ACCEPT", count=1)  # a sure refusal: reverted
            ids = await daemon.submit([task(f"r{i}") for i in range(4)])
            await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks)
            samples = await daemon.scrape()
            assert spy.refused_tasks > 0
            assert samples.get("scale_scheduler_task_launches_reverted_total") == spy.refused_tasks
            assert samples.get("scale_scheduler_task_launches_total") == len(ids) == spy.launched
            assert samples.get("scale_scheduler_tasks_ended_total", state="FINISHED") == len(ids)
            assert samples.get("scale_scheduler_tasks", state="LAUNCHING") == 0
        finally:
            await daemon.stop()


async def test_unconfirmed_launches_are_counted(tmp_path: Path) -> None:
    async with SimulatedCluster(agents=2, **SIM) as sim:
        daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
        await daemon.start(wait_subscribed=False)
        try:
            core = daemon.core
            await daemon.until(lambda: core.driver.status.subscribed)
            sim.fail_calls(500, "ACCEPT", count=1)  # the outcome is unknown: reconciled
            ids = await daemon.submit([task(f"u{i}") for i in range(4)])
            await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks)
            samples = await daemon.scrape()
            unconfirmed = samples.get("scale_scheduler_task_launches_unconfirmed_total")
            assert unconfirmed is not None
            assert 0 < unconfirmed <= len(ids)
            assert samples.get("scale_scheduler_task_launches_reverted_total") == 0
            assert samples.get("scale_scheduler_tasks_ended_total", state="FINISHED") == len(ids)
            assert not sim.record.launched_more_than_once()
        finally:
            await daemon.stop()


async def test_rescinds_are_counted(tmp_path: Path) -> None:
    async with SimulatedCluster(agents=2, **SIM) as sim:
        daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
        await daemon.start()
        try:
            core = daemon.core
            # Declines are held up at the master, so its offers stay outstanding for a while.
            sim.delay_calls(1.0, "DECLINE")
            await daemon.submit([task("huge", cpus=1000)])  # fits nowhere: every offer declined
            await daemon.until(lambda: len(sim.offers()) == 2)
            rescinded = sim.rescind_offers()
            assert rescinded == 2
            await daemon.until(lambda: core.pipeline.rescinds_received == rescinded)
            samples = await daemon.scrape()
            assert samples.get("scale_scheduler_offers_rescinded_total") == rescinded
        finally:
            sim.clear_call_faults()
            await daemon.stop()


def test_samples_helper_reads_labels() -> None:
    text = '# TYPE x gauge\nx{a="1",b="2"} 3.0\nx{a="2",b="2"} 4.0\n'
    samples = Samples(text)
    assert samples.get("x", a="1", b="2") == 3.0
    assert sorted(value for _labels, value in samples.find("x", b="2")) == [3.0, 4.0]
