"""Per-offer node bookkeeping without per-offer cost: resources stay raw JSON until read, an
unchanged offer is not decoded again, a malformed one is declined alone, and the running
cluster totals behind ``/status/`` always equal a node-by-node sum."""

from __future__ import annotations

import random
import sys
from typing import Any

import msgspec
import pytest
import structlog
from corekit import CoreHarness, make_offer, status

from scale_scheduler.daemon.mesos.mesos_types import Offer, decode_event
from scale_scheduler.daemon.scheduling import offer_nodes
from scale_scheduler.state.domain import Shape
from scale_scheduler.state.nodes import AgentTotals, NodeRepository, Resources, _clean


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Offer ids whose resources were decoded, in order."""
    seen: list[str] = []
    original = Offer.resources

    def counting(self: Offer) -> Any:
        seen.append(self.id.value)
        return original.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(Offer, "resources", property(counting))
    return seen


def test_offer_resources_stay_raw_until_read() -> None:
    event = decode_event(
        b'{"type":"OFFERS","offers":{"offers":[{"id":{"value":"o1"},'
        b'"framework_id":{"value":"f"},"agent_id":{"value":"a1"},"hostname":"h1",'
        b'"url":{"scheme":"http"},'
        b'"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}],'
        b'"attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]}]}}'
    )
    assert event.offers is not None
    (offer,) = event.offers.offers
    assert bytes(offer.resources_json).startswith(b'[{"name":"cpus"')
    assert [(r.name, r.scalar.value if r.scalar else None) for r in offer.resources] == [
        ("cpus", 2.0)
    ]
    assert [a.as_text() for a in offer.attributes] == ["r1"]
    # Built in code and encoded, an offer reads back the same.
    again = msgspec.json.decode(msgspec.json.encode(make_offer("o2", "a2", cpus=3)), type=Offer)
    assert again.resources == make_offer("o2", "a2", cpus=3).resources


async def test_unchanged_offer_is_not_decoded_again(
    harness: CoreHarness, decodes: list[str]
) -> None:
    core = await harness.start()
    await harness.offer_pass(make_offer("o1", "a1"), make_offer("o2", "a2", cpus=3))
    assert decodes == ["o1", "o2"]
    node = core.nodes.by_hostname["host-a1"]
    first_seen = node.last_offer
    harness.clock.advance(5)
    await harness.offer_pass(make_offer("o3", "a1"), make_offer("o4", "a2", cpus=2))
    assert decodes == ["o1", "o2", "o4"]  # a1 offered what it offered before: not read again
    assert node.last_offer == first_seen + 5
    assert core.nodes.by_hostname["host-a2"].offered == Resources(2.0, 4096.0, 10000.0, 0.0)


async def test_unchanged_offer_is_noted_again_when_scheduled_resources_changed(
    harness: CoreHarness, decodes: list[str]
) -> None:
    core = await harness.start()
    await harness.offer_pass(make_offer("o1", "a1", cpus=4))
    node = core.nodes.by_hostname["host-a1"]
    assert node.seen_total is not None
    assert node.seen_total.cpus == 4.0
    # Something of ours now runs there: the same offer means the agent is bigger than it looked.
    node.scheduled.add_shape(Shape(cpus=2.0, mem=0.0))
    await harness.offer_pass(make_offer("o2", "a1", cpus=4))
    assert decodes == ["o1"]  # noted again from the kept sum: the same bytes are not decoded
    assert node.seen_total.cpus == 6.0


async def test_alike_offers_are_decoded_once(harness: CoreHarness, decodes: list[str]) -> None:
    """Agents alike offer the same bytes; a node offering twice in a pass, then once, sums
    each shape once."""
    core = await harness.start()
    await harness.offer_pass(*(make_offer(f"o{i}", f"a{i}") for i in range(3)))
    assert decodes == ["o0"]
    await harness.offer_pass(make_offer("p1", "a1"), make_offer("p2", "a1"))
    assert decodes == ["o0", "p1", "p2"]
    await harness.offer_pass(make_offer("q1", "a1"))
    await harness.offer_pass(make_offer("r1", "a1"), make_offer("r2", "a1"))
    assert decodes == ["o0", "p1", "p2"]
    nodes = [core.nodes.by_hostname[f"host-a{i}"] for i in range(3)]
    assert nodes[1].offered == Resources(8.0, 8192.0, 20000.0, 0.0)
    assert nodes[0].offered == nodes[2].offered == Resources(4.0, 4096.0, 10000.0, 0.0)
    assert nodes[0].offered is not nodes[2].offered  # each node holds its own
    assert nodes[1].seen_total == Resources(8.0, 8192.0, 20000.0, 0.0)


async def test_kept_sums_are_bounded(
    harness: CoreHarness, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    core = await harness.start()
    monkeypatch.setattr(offer_nodes, "SUMS_KEPT", 2)
    for cpus in (1, 2, 3):
        await harness.offer_pass(make_offer(f"o{cpus}", "a1", cpus=cpus))
    # Full at the third: forgotten, so the first shape is decoded again.
    await harness.offer_pass(make_offer("o4", "a1", cpus=1))
    assert decodes == ["o1", "o2", "o3", "o4"]
    assert core.nodes.by_hostname["host-a1"].offered == Resources(1.0, 4096.0, 10000.0, 0.0)


def with_url(offer: Offer, port: int, pid: str = "slave(1)") -> Offer:
    url = (
        b'{"scheme":"http","address":{"hostname":"%s","ip":"10.0.0.9","port":%d},"path":"/%s"}'
        % (offer.hostname.encode(), port, pid.encode())
    )
    return msgspec.structs.replace(offer, url=msgspec.Raw(url))


async def test_the_agents_endpoint_is_read_from_the_url_only_when_a_node_changes(
    harness: CoreHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scale_scheduler.daemon.scheduling import offer_nodes

    reads: list[bytes] = []
    original = offer_nodes.endpoint_from_offer_url

    def counting(raw: Any) -> str | None:
        reads.append(bytes(raw))
        return original(raw)

    monkeypatch.setattr(offer_nodes, "endpoint_from_offer_url", counting)
    core = await harness.start()
    await harness.offer_pass(with_url(make_offer("o1", "a1"), 5051))
    node = core.nodes.by_hostname["host-a1"]
    assert node.agent_endpoint == "http://10.0.0.9:5051/slave(1)"
    assert len(reads) == 1
    # The same offer again: nothing is read (the offer path stays as cheap as without urls).
    await harness.offer_pass(with_url(make_offer("o2", "a1"), 5051))
    assert len(reads) == 1
    # Changed resources, same url: the raw url is compared, not decoded again.
    await harness.offer_pass(with_url(make_offer("o3", "a1", cpus=2), 5051))
    assert len(reads) == 1
    # The agent came back elsewhere (a new agent id): its new address is read.
    await harness.offer_pass(
        with_url(make_offer("o4", "a1b", hostname="host-a1"), 5052, "slave(2)")
    )
    assert node.agent_endpoint == "http://10.0.0.9:5052/slave(2)"
    assert len(reads) == 2


async def test_a_node_keeps_no_offers_event_alive(harness: CoreHarness) -> None:
    """A decoded offer's raw fields are views of the whole OFFERS record: what a node keeps
    (its offers' raw resources and url, until they change) is copied out of it."""
    core = await harness.start()
    offers = b",".join(
        b'{"id":{"value":"o%d"},"framework_id":{"value":"f"},"agent_id":{"value":"a%d"},'
        b'"hostname":"h%d","url":{"scheme":"http","address":{"hostname":"h%d",'
        b'"ip":"10.0.0.9","port":5051},"path":"/slave(1)"},'
        b'"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]}' % (i, i, i, i)
        for i in range(2)
    )
    record = b'{"type":"OFFERS","offers":{"offers":[%s]}}' % offers
    held = sys.getrefcount(record)
    event = decode_event(record)
    assert event.offers is not None
    assert sys.getrefcount(record) > held  # the decoded offers refer to it
    await harness.offer_pass(*event.offers.offers)
    del event
    node = core.nodes.by_hostname["h1"]
    assert bytes(node.offer_key) == b'[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]'
    assert node.agent_endpoint == "http://10.0.0.9:5051/slave(1)"
    assert sys.getrefcount(record) == held
    # Twice in one pass: the pair's key is copied too.
    twice = record.replace(b'"h1"', b'"h0"')
    held = sys.getrefcount(twice)
    event = decode_event(twice)
    assert event.offers is not None
    await harness.offer_pass(*event.offers.offers)
    del event
    assert isinstance(core.nodes.by_hostname["h0"].offer_key, tuple)
    assert sys.getrefcount(twice) == held


async def test_get_agents_pid_names_the_agents_endpoint(harness: CoreHarness) -> None:
    from scale_scheduler.daemon.mesos.operator_api import parse_get_agents

    core = await harness.start()
    body = (
        b'{"type":"GET_AGENTS","get_agents":{"agents":[{"agent_info":{"hostname":"h9",'
        b'"id":{"value":"a9"}},"pid":"slave(3)@10.1.2.3:5051","total_resources":[]}]}}'
    )
    agents = parse_get_agents(body)
    assert agents[0].endpoint == "http://10.1.2.3:5051/slave(3)"
    await core.nodes.apply_agents(agents)
    assert core.nodes.by_hostname["h9"].agent_endpoint == "http://10.1.2.3:5051/slave(3)"


async def test_malformed_offer_is_declined_alone(harness: CoreHarness) -> None:
    core = await harness.start()
    await harness.submit(1)
    bad = msgspec.structs.replace(
        make_offer("bad", "a1"), resources_json=msgspec.Raw(b'[{"name": 5}]')
    )
    harness.log.clear()
    with structlog.testing.capture_logs() as logs:
        await harness.offer_pass(bad, make_offer("good", "a2"))
    assert ("decline", ("bad",), 120.0) in harness.log
    (accept,) = harness.driver.of("accept")
    assert list(accept[1].offer_ids) == ["good"]
    (event,) = [e for e in logs if e["event"] == "offer_malformed"]
    assert (event["offer_id"], event["agent_id"], event["hostname"]) == ("bad", "a1", "host-a1")
    assert "name" in event["error"]
    assert core.pipeline.last_pass is not None
    assert core.pipeline.last_pass.decline_reasons == {"MALFORMED": 1}


async def test_a_malformed_offer_is_declined_every_time(harness: CoreHarness) -> None:
    """Only good sums are kept: the same malformed bytes are refused again."""
    core = await harness.start()
    raw = msgspec.Raw(b'[{"name": 5}]')
    for attempt in ("b1", "b2"):
        harness.log.clear()
        await harness.offer_pass(
            msgspec.structs.replace(make_offer(attempt, "a1"), resources_json=raw)
        )
        assert ("decline", (attempt,), 120.0) in harness.log
        assert core.pipeline.last_pass is not None
        assert core.pipeline.last_pass.decline_reasons == {"MALFORMED": 1}


def summed_totals(nodes: NodeRepository) -> tuple[Resources | None, Resources]:
    """The oracle: what ``NodeRepository.totals()`` must equal, summed node by node."""
    total: Resources | None = None
    scheduled = Resources()
    for node in nodes.by_id.values():
        scheduled.cpus += node.scheduled.cpus
        scheduled.mem += node.scheduled.mem
        scheduled.disk += node.scheduled.disk
        scheduled.gpus += node.scheduled.gpus
        node_total = node.total
        if node.online and node_total is not None:
            if total is None:
                total = Resources()
            total.cpus += node_total.cpus
            total.mem += node_total.mem
            total.disk += node_total.disk
            total.gpus += node_total.gpus
    if total is not None:
        total = Resources(*(_clean(v) for v in (total.cpus, total.mem, total.disk, total.gpus)))
    scheduled = Resources(
        *(_clean(v) for v in (scheduled.cpus, scheduled.mem, scheduled.disk, scheduled.gpus))
    )
    return total, scheduled


async def test_running_totals_equal_the_node_by_node_sum(harness: CoreHarness) -> None:
    """A random walk of offers, launches, finished tasks, agents lost and agent listings."""
    core = await harness.start()
    nodes = core.nodes
    rng = random.Random(8)
    assert nodes.totals() == summed_totals(nodes) == (None, Resources())
    await harness.submit(60, cpus=0.5, mem=64.0)
    finished: set[str] = set()
    for step in range(300):
        agent = f"a{rng.randrange(12)}"
        action = rng.randrange(5)
        if action == 0:
            cpus = rng.choice([1.0, 2.5, 4.0, 8.0])
            await harness.offer_pass(make_offer(f"o{step}", agent, cpus=cpus))
        elif action == 1:
            launched = {
                t.task_id.value: t.agent_id.value
                for call in harness.driver.of("accept")
                for t in call[1].tasks
            }
            running = sorted(set(launched) - finished)
            if running:
                task_id = rng.choice(running)
                state = rng.choice(["TASK_RUNNING", "TASK_FINISHED"])
                if state == "TASK_FINISHED":
                    finished.add(task_id)
                await harness.updates(status(task_id, state, agent=launched[task_id]))
        elif action == 2:
            nodes.agent_removed(agent)
        elif action == 3 and nodes.by_agent:
            known = list(nodes.by_agent.values())
            listed = rng.sample(known, rng.randrange(len(known) + 1))
            await nodes.apply_agents(
                [
                    AgentTotals(n.agent_id or "", n.hostname, Resources(16.0, 65536.0, 1e6, 1.0))
                    for n in listed
                ]
            )
        elif nodes.by_agent:
            node = rng.choice(list(nodes.by_agent.values()))
            node.scheduled.add_shape(Shape(cpus=0.25, mem=32.0, disk=1.0), rng.choice([1.0, -1.0]))
        assert nodes.totals() == summed_totals(nodes), f"step {step}"
    total, scheduled = nodes.totals()
    assert total is not None
    assert total.cpus > 0
    assert scheduled.cpus > 0
    assert finished
    assert len(harness.driver.launched_ids()) > len(finished)
