"""B3's constrained variant: ``match()`` over B3's queue size where a tenth of the tasks carry
Marathon's scoped constraints, in this process (pure code, as B3's own match figure).

A tenth of the tasks belong to 100 groups, each group with one of ``UNIQUE hostname``,
``GROUP_BY rack`` and ``MAX_PER rack 2``; the other nine tenths are plain. Two layouts of the
queue: ``batched``, each group's tasks submitted together (a run of ids per group, between runs
of plain tasks, as batches arrive), and ``interleaved``, every tenth task constrained (the worst
case for the matcher's merge of groups by id: no run longer than nine). Each group already runs
a few tasks (the group counts the matcher reads, as ``PlacementCounts`` keeps them). The offers
are B3's recorded OFFERS event (100 agents), each agent given a ``rack`` attribute (r0..r9). The
queue is a ``QueueIndex`` over in-memory records: what the tracker hands the matcher.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from bench.common import Settings, percentile
from bench.offer_stream import OfferStream, load_offers
from scale_scheduler.daemon.mesos.mesos_types import Attribute, Offer, Value, decode_event
from scale_scheduler.daemon.scheduling.matcher import MatchSettings, agent_values, match
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.state.domain import ShapeInterner, TaskState, constraints_from
from scale_scheduler.state.placement_counts import PlacementCounts
from scale_scheduler.state.tasks import Task

GROUPS = 100
RACKS = 10
SHARE = 10
"""One task in ``SHARE`` is constrained."""
FORMS = ([["hostname", "UNIQUE"]], [["rack", "GROUP_BY"]], [["rack", "MAX_PER", "2"]])


def _offers(settings: Settings) -> list[Offer]:
    stream = OfferStream(load_offers(settings.offers_path))
    event = decode_event(stream.payloads(1)[0])
    assert event.offers is not None
    return [
        Offer.build(
            id=offer.id,
            framework_id=offer.framework_id,
            agent_id=offer.agent_id,
            hostname=offer.hostname,
            resources=list(offer.resources),
            attributes=[Attribute(name="rack", type="TEXT", text=Value(f"r{i % RACKS}"))],
            allocation_info=offer.allocation_info,
        )
        for i, offer in enumerate(event.offers.offers)
    ]


def _queue(
    tasks: int, offers: list[Offer], interleaved: bool
) -> tuple[QueueIndex, PlacementCounts, int]:
    interner = ShapeInterner()
    plain = interner.get(1.0, 128.0)
    grouped = [
        interner.get(1.0, 128.0, constraints=constraints_from(FORMS[g % 3], f"g{g}"), group=f"g{g}")
        for g in range(GROUPS)
    ]
    records: dict[int, Task] = {}
    index = QueueIndex(records)
    constrained = 0
    run = 1 if interleaved else max(1, tasks // (GROUPS * SHARE))
    for task_id in range(1, tasks + 1):
        block = (task_id - 1) // run
        if block % SHARE == SHARE - 1:
            shape = grouped[(block // SHARE) % GROUPS]
            constrained += 1
        else:
            shape = plain
        task = Task(task_id, 100, shape, b"{}", TaskState.QUEUED, 1)
        records[task_id] = task
        index.add(task)
    counts = PlacementCounts()
    for offer in offers:
        counts.learn(agent_values(offer))
    hosts = [offer.hostname for offer in offers]
    for g in range(GROUPS):
        for j in range(3):  # each group already runs three tasks
            counts.launched(hosts[(g * 7 + j * 31) % len(hosts)], f"g{g}")
    return index, counts, constrained


def run(settings: Settings) -> dict[str, Any]:
    """Both layouts; the figures at the top (the target's) are the interleaved layout's: at full
    size the batched layout's first 3,200 ids are all plain, so only interleaving makes every
    pass place constrained tasks."""
    offers = _offers(settings)
    batched = _timed(settings, offers, interleaved=False)
    interleaved = _timed(settings, offers, interleaved=True)
    return {
        **interleaved,
        "groups": GROUPS,
        "offers": len(offers),
        "batched": batched,
        "interleaved": interleaved,
    }


def _timed(settings: Settings, offers: list[Offer], interleaved: bool) -> dict[str, Any]:
    index, counts, constrained = _queue(settings.b3_tasks, offers, interleaved)
    match_settings = MatchSettings(5.0, 120.0)
    gc.freeze()  # as the daemon runs after its start-up load (daemon/service/service.py)
    try:
        durations: list[float] = []
        placed = waiting = 0
        for _ in range(settings.b3_match_repeats):
            started = time.perf_counter()
            result = match(
                offers,
                index,
                scheduler_paused=False,
                blocked_hosts={},
                settings=match_settings,
                placement=counts,
            )
            durations.append((time.perf_counter() - started) * 1000)
            placed = result.placed
            waiting = len(result.waiting)
    finally:
        gc.unfreeze()
    return {
        "queued": settings.b3_tasks,
        "constrained": constrained,
        "p50_ms": percentile(durations, 0.50),
        "p99_ms": percentile(durations, 0.99),
        "max_ms": max(durations),
        "placed_per_match": placed,
        "waiting_groups": waiting,
        "repeats": settings.b3_match_repeats,
    }
