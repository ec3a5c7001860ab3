"""Flag writes under concurrency: every acknowledged change takes effect (issue 14 item 2), and
every answer shows the state its own write produced (item 12)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scale_scheduler.state.nodes import NodeRepository, NodeSighting
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "s.db")
    try:
        yield store
    finally:
        await store.close()


async def _nodes(store: Store) -> NodeRepository:
    nodes = NodeRepository(SqliteState(store), clock=lambda: 1000.0)
    await nodes.learn([NodeSighting("agent-a", "a-1")])
    return nodes


async def _committed(store: Store, node_id: int) -> tuple[bool, str | None, bool]:
    row = await store.fetchone(
        "SELECT is_paused, pause_reason, is_active FROM nodes WHERE id = ?", (node_id,)
    )
    assert row is not None
    return bool(row[0]), row[1], bool(row[2])


async def test_concurrent_changes_of_different_flags_all_take_effect(store: Store) -> None:
    nodes = await _nodes(store)
    node = nodes.by_hostname["agent-a"]
    await asyncio.gather(
        nodes.update_flags(node.id, is_paused=True, pause_reason="disk", set_reason=True),
        nodes.update_flags(node.id, is_active=False),
    )
    assert await _committed(store, node.id) == (True, "disk", False)
    assert (node.is_paused, node.pause_reason, node.is_active) == (True, "disk", False)
    assert node.blocks_launches
    assert nodes.blocking == {"agent-a": node}


async def test_the_flag_rules_hold_when_computed_at_commit(store: Store) -> None:
    nodes = await _nodes(store)
    node = nodes.by_hostname["agent-a"]
    pause = nodes.update_flags(node.id, is_paused=True, pause_reason="disk", set_reason=True)
    keep = nodes.update_flags(node.id, is_paused=True)  # pausing again keeps the reason
    await asyncio.gather(pause, keep)
    assert await _committed(store, node.id) == (True, "disk", True)
    unpause = nodes.update_flags(node.id, is_paused=False)  # unpausing clears it
    reason_only = nodes.update_flags(node.id, pause_reason="late", set_reason=True)
    await asyncio.gather(unpause, reason_only)
    assert await _committed(store, node.id) == (False, None, True)
    assert (node.is_paused, node.pause_reason, node.is_active) == (False, None, True)


async def test_memory_matches_the_database_after_random_concurrent_changes(store: Store) -> None:
    nodes = await _nodes(store)
    node = nodes.by_hostname["agent-a"]
    rng = random.Random(14)
    for _ in range(10):
        changes = []
        for i in range(12):
            kwargs: dict[str, object] = {}
            if rng.random() < 0.6:
                kwargs["is_paused"] = rng.random() < 0.5
            if rng.random() < 0.5:
                kwargs["is_active"] = rng.random() < 0.5
            if rng.random() < 0.4:
                kwargs.update(set_reason=True, pause_reason=rng.choice([None, f"r{i}"]))
            changes.append(nodes.update_flags(node.id, **kwargs))  # type: ignore[arg-type]
        await asyncio.gather(*changes)
        assert (node.is_paused, node.pause_reason, node.is_active) == await _committed(
            store, node.id
        )


async def test_each_node_answer_shows_its_own_write(store: Store) -> None:
    nodes = await _nodes(store)
    node = nodes.by_hostname["agent-a"]
    wanted = [i % 2 == 0 for i in range(30)]
    answers = await asyncio.gather(
        *(
            nodes.update_flags(node.id, is_paused=v, pause_reason=f"r{i}", set_reason=True)
            for i, v in enumerate(wanted)
        )
    )
    shown = [(a.is_paused, a.pause_reason) for a in answers]
    assert shown == [(v, f"r{i}" if v else None) for i, v in enumerate(wanted)]


async def test_each_scheduler_answer_shows_its_own_write(store: Store) -> None:
    repo = SchedulerRepository(SqliteState(store))
    await repo.ensure_and_load()
    wanted = [i % 3 == 0 for i in range(50)]
    answers = await asyncio.gather(*(repo.set_paused(v) for v in wanted))
    assert [a.is_paused for a in answers] == wanted
    assert repo.state.is_paused is wanted[-1]  # applied in order: the last write holds
