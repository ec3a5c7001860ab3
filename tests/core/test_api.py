"""The REST API of the scheduling core, in process, with the fake driver: /queue/, /tasks/,
/nodes/ and the numbers /status/ shows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from corekit import Clock, FakeDriver, make_offer, status
from structlog.testing import capture_logs
from yarl import URL

from scale_scheduler.api.app import FACADE, SCHEDULER, SCHEDULER_CORE, STATE, STORE, build_app
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.nodes import AgentTotals, Resources

Client = TestClient[web.Request, web.Application]

AGENTS = [
    AgentTotals("a1", "host-a1", Resources(8, 16384, 100000)),
    AgentTotals("a2", "host-a2", Resources(4, 8192, 50000)),
]


@pytest.fixture
async def client(
    core_config: Config,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> AsyncIterator[Client]:
    app = build_app(core_config, connect_mesos=False)
    driver = FakeDriver()

    async def fetch_agents() -> list[AgentTotals]:
        return AGENTS

    async def core_context(app: web.Application) -> AsyncIterator[None]:
        core = SchedulerCore(
            core_config, app[STATE], app[SCHEDULER], driver, Clock(), fetch_agents=fetch_agents
        )
        await core.start()
        app[SCHEDULER_CORE] = core
        app[FACADE].attach_core(core)
        yield
        await core.stop()

    app.cleanup_ctx.append(core_context)
    return await aiohttp_client(app)


def core_of(client: Client) -> SchedulerCore:
    return client.app[SCHEDULER_CORE]  # type: ignore[index]


async def offer_pass(client: Client, *offers: Any) -> None:
    core = core_of(client)
    core.pipeline.add_offers(list(offers))
    await core.pipeline.run_pass()


async def text_error(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "text/plain"
    return str(await response.text())


TASK = {"name": "t", "command": "true", "cpus": 1, "mem": 64}


async def test_post_one_task(client: Client) -> None:
    response = await client.post("/queue/", json={**TASK, "env": {"A": "b"}, "priority": 7})
    assert response.status == 201
    body = await response.json()
    assert body["id"] == 1
    assert body["state"] == "QUEUED"
    assert body["env"] == {"A": "b"}
    assert body["priority"] == 7
    assert response.headers["Location"].endswith("/tasks/1/")
    row = await client.app[STORE].fetchone("SELECT state, name FROM tasks WHERE id = 1")  # type: ignore[index]
    assert row == ("QUEUED", "t")  # durable before the answer
    fetched = await (await client.get("/tasks/1/")).json()
    assert fetched["name"] == "t"
    assert fetched["waiting_reason"] == "waiting for an offer"


async def test_post_a_batch_and_queue_depth(client: Client) -> None:
    batch = [{**TASK, "name": f"t{i}"} for i in range(5)]
    response = await client.post("/queue/", json=batch)
    assert response.status == 201
    body = await response.json()
    assert [t["id"] for t in body] == [1, 2, 3, 4, 5]
    assert {t["state"] for t in body} == {"QUEUED"}
    status_body = await (await client.get("/status/")).json()
    assert status_body["queue_depth"] == 5


async def test_batch_is_all_or_nothing(client: Client) -> None:
    batch = [dict(TASK), dict(TASK), {**TASK, "cpus": 0}]
    message = await text_error(await client.post("/queue/", json=batch), 400)
    assert "'cpus'" in message
    assert "index 2" in message
    row = await client.app[STORE].fetchone("SELECT COUNT(*) FROM tasks")  # type: ignore[index]
    assert row == (0,)
    assert core_of(client).queue_depth == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({**TASK, "colour": 1, "size": 2}, "Unexpected fields: colour, size"),
        ([TASK, {**TASK, "x": 1}], "Unexpected fields: x (task at index 1"),
        ({**TASK, "cpus": -1, "colour": "red"}, "Unexpected fields: colour"),
        ({**TASK, "container": {"image": "i", "tag": "t"}}, "container: Unexpected fields: tag"),
        ({**TASK, "cpus": 0}, "Field 'cpus' is invalid: expected float > 0.0"),
        ({**TASK, "mem": "lots"}, "Field 'mem' is invalid: expected float, got str"),
        ({**TASK, "priority": 1.5}, "Field 'priority' is invalid: expected int, got float"),
        ({**TASK, "max_attempts": 0}, "Field 'max_attempts' is invalid"),
        ({**TASK, "kill_grace_period": -1}, "Field 'kill_grace_period' is invalid"),
        ({**TASK, "max_runtime": 0}, "Field 'max_runtime' is invalid: expected float > 0"),
        (
            {**TASK, "retry_backoff": {"initial": 9, "max": 3}},
            "Field 'retry_backoff' is invalid: max must be between initial",
        ),
        ({**TASK, "retry_backoff": {"factor": 0.5}}, "Field 'retry_backoff.factor' is invalid"),
        ({**TASK, "retry_backoff": {"delay": 1}}, "retry_backoff: Unexpected fields: delay"),
        ({**TASK, "gpus": -1}, "Field 'gpus' is invalid"),
        ({**TASK, "env": {"A": 1}}, "Field 'env' is invalid: expected str, got int"),
        ({"command": "true", "cpus": 1, "mem": 1}, "Field 'name' is required"),
        ({"name": "t", "cpus": 1, "mem": 1}, "Field 'command' is required when there is no"),
        ("a string", "must be a task (JSON object) or a list of tasks"),
        ([], "The batch is empty"),
        ([TASK, 5], "Each task must be a JSON object (task at index 1"),
    ],
)
async def test_bad_bodies_are_named(client: Client, body: Any, expected: str) -> None:
    message = await text_error(await client.post("/queue/", json=body), 400)
    assert expected in message


async def test_not_json_and_oversized_batch(client: Client) -> None:
    json_type = {"Content-Type": "application/json"}
    response = await client.post("/queue/", data=b"{", headers=json_type)
    assert "not valid JSON" in await text_error(response, 400)
    assert "empty" in await text_error(await client.post("/queue/", data=b""), 400)
    big = [TASK] * 10_001
    assert "at most 10000" in await text_error(await client.post("/queue/", json=big), 400)


async def test_container_only_task(client: Client) -> None:
    body = {"name": "img", "container": {"image": "busybox"}, "cpus": 1, "mem": 32}
    response = await client.post("/queue/", json=body)
    assert response.status == 201
    assert (await response.json())["container"] == {"image": "busybox"}


async def test_queue_lists_launch_order_with_pages(client: Client) -> None:
    batch = [
        {**TASK, "name": "late", "priority": 200},
        {**TASK, "name": "first", "priority": 1},
        {**TASK, "name": "a"},
        {**TASK, "name": "b", "mem": 128},
    ]
    await client.post("/queue/", json=batch)
    page1 = await (await client.get("/queue/?page_size=2")).json()
    assert page1["count"] == 4
    assert [t["name"] for t in page1["results"]] == ["first", "a"]
    assert page1["previous"] is None
    page2 = await (await client.get(URL(page1["next"]).path_qs)).json()
    assert [t["name"] for t in page2["results"]] == ["b", "late"]
    assert page2["next"] is None
    assert page2["previous"] is not None
    assert "between 1 and" in await text_error(await client.get("/queue/?page=0"), 400)


async def test_waiting_reason_names_the_missing_resource(client: Client) -> None:
    await client.post("/queue/", json=[{**TASK, "cpus": 64}, TASK])
    await offer_pass(client, make_offer("o1", "a1", cpus=8))
    big = await (await client.get("/tasks/1/")).json()
    assert big["waiting_reason"] == "no offer has 64 cpus"
    small = await (await client.get("/tasks/2/")).json()
    assert small["state"] == "LAUNCHING"  # the unplaceable task did not block it
    assert small["waiting_reason"] is None
    assert small["mesos_task_id"] == "2-1"
    assert small["hostname"] == "host-a1"
    assert small["attempts"] == 1


async def test_tasks_filter_by_state(client: Client) -> None:
    await client.post("/queue/", json=[TASK, TASK, {**TASK, "cpus": 100}])
    await offer_pass(client, make_offer("o1", "a1", cpus=2))
    core_of(client).on_update(status("1-1", "TASK_RUNNING"))
    await core_of(client).intake.process_pending()
    running = await (await client.get("/tasks/?state=RUNNING")).json()
    assert [t["id"] for t in running["results"]] == [1]
    assert running["results"][0]["last_status"]["state"] == "TASK_RUNNING"
    queued = await (await client.get("/tasks/?state=queued")).json()
    assert [t["id"] for t in queued["results"]] == [3]
    everything = await (await client.get("/tasks/")).json()
    assert everything["count"] == 3
    assert "Unknown task state" in await text_error(await client.get("/tasks/?state=NOPE"), 400)


async def test_delete_cancels_queued_and_kills_launched(client: Client) -> None:
    await client.post("/queue/", json=[TASK, {**TASK, "cpus": 100}])
    await offer_pass(client, make_offer("o1", "a1", cpus=1))
    cancelled = await client.delete("/tasks/2/")
    assert cancelled.status == 200
    assert (await cancelled.json())["state"] == "CANCELED"
    assert "already CANCELED" in await text_error(await client.delete("/tasks/2/"), 409)
    killed = await client.delete("/tasks/1/")
    assert killed.status == 202
    assert (await killed.json())["kill_requested"] is True
    driver = core_of(client).driver
    assert isinstance(driver, FakeDriver)
    assert ("kill", "1-1", "a1") in driver.calls
    assert "No task with id 99" in await text_error(await client.delete("/tasks/99/"), 404)
    assert "No task with id 99" in await text_error(await client.get("/tasks/99/"), 404)
    assert (await client.get("/status/")).status == 200
    assert core_of(client).queue_depth == 0


async def test_nodes_list_get_and_hostname_filter(client: Client) -> None:
    await offer_pass(client, make_offer("o1", "a1"), make_offer("o2", "a2"))
    listing = await (await client.get("/nodes/")).json()
    assert listing["count"] == 2
    node = listing["results"][0]
    assert node["hostname"] == "host-a1"
    assert node["agent_id"] == "a1"
    assert node["state"] == "READY"
    assert node["last_offer"] is not None
    by_host = await (await client.get("/nodes/?hostname=host-a2")).json()
    assert [n["agent_id"] for n in by_host["results"]] == ["a2"]
    one = await (await client.get(f"/nodes/{node['id']}/")).json()
    assert one["id"] == node["id"]
    assert "No node with id 77" in await text_error(await client.get("/nodes/77/"), 404)


async def test_patch_node_pause_and_unpause(client: Client) -> None:
    await offer_pass(client, make_offer("o1", "a1"))
    response = await client.patch("/nodes/1/", json={"is_paused": True, "pause_reason": "disk"})
    assert response.status == 200
    body = await response.json()
    assert (body["is_paused"], body["pause_reason"], body["state"]) == (True, "disk", "PAUSED")
    await client.patch("/scheduler/", json={"is_paused": True})
    await client.patch("/scheduler/", json={"is_paused": False})
    again = await (await client.get("/nodes/1/")).json()
    assert (again["is_paused"], again["pause_reason"]) == (True, "disk")
    unpaused = await (await client.patch("/nodes/1/", json={"is_paused": False})).json()
    assert (unpaused["is_paused"], unpaused["pause_reason"]) == (False, None)
    inactive = await (await client.patch("/nodes/1/", json={"is_active": False})).json()
    assert inactive["state"] == "INACTIVE"
    await client.patch("/scheduler/", json={"is_paused": True})
    await client.patch("/nodes/1/", json={"is_active": True})
    assert (await (await client.get("/nodes/1/")).json())["state"] == "SCHEDULER_PAUSED"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([1], "must be a JSON object"),
        ({}, "No fields specified for update"),
        ({"is_paused": True, "color": 1, "size": 2}, "Unexpected fields: color, size"),
        ({"is_paused": "yes"}, "Field 'is_paused' must be a JSON boolean"),
        ({"is_active": 1}, "Field 'is_active' must be a JSON boolean"),
        ({"pause_reason": 5}, "Field 'pause_reason' must be a JSON string or null"),
    ],
)
async def test_patch_node_errors(client: Client, body: Any, expected: str) -> None:
    await offer_pass(client, make_offer("o1", "a1"))
    assert expected in await text_error(await client.patch("/nodes/1/", json=body), 400)


async def test_patch_unknown_node(client: Client) -> None:
    response = await client.patch("/nodes/5/", json={"is_paused": True})
    assert "No node with id 5" in await text_error(response, 404)


async def test_status_resources_agree_with_nodes(client: Client) -> None:
    core = core_of(client)
    await core.refresh_agents()
    await client.post("/queue/", json=[{**TASK, "cpus": 2, "mem": 1000, "disk": 10}] * 3)
    await offer_pass(client, make_offer("o1", "a1"), make_offer("o2", "a2"))
    resources = (await (await client.get("/status/")).json())["resources"]
    assert resources["total"] == {"cpus": 12.0, "mem": 24576.0, "disk": 150000.0}
    assert resources["scheduled"] == {"cpus": 6.0, "mem": 3000.0, "disk": 30.0}
    assert resources["used"] == {"cpus": 0.0, "mem": 0.0, "disk": 0.0}
    nodes = (await (await client.get("/nodes/")).json())["results"]
    for key in ("cpus", "mem", "disk"):
        assert sum(n["resources"]["total"][key] for n in nodes) == resources["total"][key]
        assert sum(n["resources"]["scheduled"][key] for n in nodes) == resources["scheduled"][key]
    assert sum(n["running_tasks"] for n in nodes) == 3


async def test_status_has_no_resources_before_any_agent_is_known(client: Client) -> None:
    body = await (await client.get("/status/")).json()
    assert "resources" not in body
    assert body["queue_depth"] == 0


def _broken() -> None:
    raise RuntimeError("the reaction broke")


async def test_a_failing_reaction_leaves_a_committed_pause_answered_and_logged_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = core_of(client)
    monkeypatch.setattr(core.pipeline, "sync_interest", _broken)
    monkeypatch.setattr(core.pipeline, "request_revive", _broken)
    with capture_logs() as events:
        paused = await client.patch("/scheduler/", json={"is_paused": True})
        unpaused = await client.patch("/scheduler/", json={"is_paused": False})
    assert (paused.status, await paused.json()) == (201, {"is_paused": True})
    assert (unpaused.status, await unpaused.json()) == (201, {"is_paused": False})
    failures = [e for e in events if e["event"] == "flag_reaction_failed"]
    assert [e["change"] for e in failures] == ["pause_changed", "pause_changed"]
    assert not [e for e in events if e["event"] == "request_failed"]
    row = await client.app[STORE].fetchone("SELECT is_paused FROM scheduler WHERE id = 1")  # type: ignore[index]
    assert row == (0,)
    assert (await (await client.get("/scheduler/")).json()) == {"is_paused": False}


async def test_a_failing_reaction_leaves_committed_node_flags_answered(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await offer_pass(client, make_offer("o1", "a1"))
    monkeypatch.setattr(core_of(client).pipeline, "request_revive", _broken)
    with capture_logs() as events:
        response = await client.patch("/nodes/1/", json={"is_active": True})
    assert response.status == 200, await response.text()
    assert [e["change"] for e in events if e["event"] == "flag_reaction_failed"] == [
        "node_flags_changed"
    ]
    response = await client.patch("/nodes/1/", json={"is_paused": True, "pause_reason": "disk"})
    assert (await response.json())["pause_reason"] == "disk"
    row = await client.app[STORE].fetchone("SELECT is_paused, pause_reason FROM nodes WHERE id = 1")  # type: ignore[index]
    assert row == (1, "disk")


async def test_status_metrics_and_dashboard_read_one_snapshot(client: Client) -> None:
    facade = client.app[FACADE]
    first = facade.status()
    assert facade.status() is first  # nothing changed: the same snapshot, not a rebuild
    await client.post("/queue/", json=TASK)
    snapshot = facade.status()
    assert snapshot is not first
    assert snapshot.queue_depth == 1
    status = await (await client.get("/status/")).json()
    assert status == msgspec.to_builtins(snapshot)
    dashboard = await (await client.get("/dashboard/state/")).json()
    assert dashboard["master"] == status["master"]
    shown = {key: dashboard["scheduler"][key] for key in status["scheduler"]}
    assert shown == status["scheduler"]
    assert dashboard["queue_depth"] == status["queue_depth"] == 1
    metrics = await (await client.get("/metrics")).text()
    assert "scale_scheduler_queue_depth 1.0" in metrics.splitlines()
    await client.patch("/scheduler/", json={"is_paused": True})
    assert (await (await client.get("/status/")).json())["scheduler"]["is_paused"] is True
    assert facade.status() is not snapshot
