"""Writes a standby commits itself while no instance leads, on a real PostgreSQL.

Each write runs in a transaction that locks the leadership row and checks that no term is live
(``leadership.without_leader``). The races with an election are made deterministic by holding
one side's transaction open and waiting until the other is blocked on it (``pg_blocking_pids``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from pgserver import PgDatabase

from scale_scheduler.daemon.scheduling.leaderless import Leaderless
from scale_scheduler.daemon.scheduling.task_values import (
    DeleteOutcome,
    NewTask,
    TaskNotFoundError,
)
from scale_scheduler.state import changes as c
from scale_scheduler.state.interface import LeaderLiveError, LockedRows
from scale_scheduler.state.nodes import FlagChange, NodeNotFoundError
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.errors import FencedError
from scale_scheduler.state.postgres.leadership import Lease, fenced, read_leadership
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.tasks import TaskSpec

SHORT = 0.2  # seconds: a lease that lapses within a test


def new_task(name: str, priority: int = 1) -> NewTask:
    return NewTask(
        spec=TaskSpec(name=name, command="true"),
        priority=priority,
        cpus=0.1,
        mem=16.0,
        disk=0.0,
        gpus=0,
        ports=0,
        constraints=(),
        max_attempts=3,
    )


@pytest.fixture
async def state(pg_database: PgDatabase) -> AsyncIterator[PostgresState]:
    state = await PostgresState.open(pg_database.dsn, Password(pg_database.password))
    await state.commit([c.SchedulerRowEnsured(1.0)])
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def leaderless(state: PostgresState) -> Leaderless:
    return Leaderless(state, state)


async def names(connection: asyncpg.Connection) -> list[tuple[int, str, str]]:
    rows = await connection.fetch("SELECT id, name, state FROM tasks ORDER BY id")
    return [tuple(row) for row in rows]


async def wait_until_blocked(observer: asyncpg.Connection, *, query_like: str) -> None:
    """Until a backend running ``query_like`` waits for a lock another holds."""
    for _ in range(500):
        blocked = await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE $1 "
            "AND cardinality(pg_blocking_pids(pid)) > 0)",
            query_like,
        )
        if blocked:
            return
        await asyncio.sleep(0.01)  # poll interval of the wait for the other side to block
    raise AssertionError(f"no backend running {query_like!r} ever blocked")


async def lapse(connection: asyncpg.Connection) -> None:
    for _ in range(500):
        if not (await read_leadership(connection)).live:
            return
        await asyncio.sleep(0.02)  # poll interval of the wait for the lease to lapse
    raise AssertionError("the lease never lapsed")


async def test_with_no_term_ever_the_writes_commit_and_read_back(
    pg_database: PgDatabase, leaderless: Leaderless
) -> None:
    views = await leaderless.submit([new_task("low", priority=5), new_task("high", priority=0)])
    assert [v.id for v in views] == [1, 2]
    assert await leaderless.set_paused(True) is True
    assert await leaderless.is_paused() is True
    count, page = await leaderless.queue_page(0, 10)
    assert count == 2
    assert [v.name for v in page] == ["high", "low"]  # launch order: priority, then id
    assert await leaderless.cancel(2) is DeleteOutcome.CANCELED
    assert await leaderless.cancel(2) is DeleteOutcome.ALREADY_TERMINAL
    with pytest.raises(TaskNotFoundError):
        await leaderless.cancel(99)
    assert await leaderless.queue_depth() == 1
    connection = await pg_database.connect()
    try:
        assert await names(connection) == [(1, "low", "QUEUED"), (2, "high", "CANCELED")]
        assert await connection.fetchval("SELECT is_paused FROM scheduler") is True
        counted = await connection.fetchval("SELECT n FROM task_counts WHERE state = 'CANCELED'")
        assert counted == 1
    finally:
        await connection.close()


async def test_node_flags_are_written_from_the_locked_row(
    state: PostgresState, leaderless: Leaderless
) -> None:
    await state.commit([c.NodesSighted([c.NewNode(1, "agent-1.test", "agent-1", 1.0)], [])])
    view = await leaderless.set_node_flags(
        1, FlagChange(is_paused=True, set_reason=True, pause_reason="disk")
    )
    assert (view.is_paused, view.pause_reason, view.is_active) == (True, "disk", True)
    view = await leaderless.set_node_flags(1, FlagChange(is_active=False))
    assert (view.is_paused, view.pause_reason, view.is_active) == (True, "disk", False)
    stored = await leaderless.node(1)
    assert (stored.is_paused, stored.pause_reason, stored.is_active) == (True, "disk", False)
    count, page = await leaderless.node_page(0, 10)
    assert count == 1
    assert page[0].hostname == "agent-1.test"
    with pytest.raises(NodeNotFoundError):
        await leaderless.set_node_flags(2, FlagChange(is_active=False))


async def test_a_live_term_refuses_the_write_and_nothing_changes(
    pg_database: PgDatabase, leaderless: Leaderless
) -> None:
    connection = await pg_database.connect()
    try:
        writes = await connection.fetchval("SELECT count(*) FROM state_writes")
        term = await Lease("leader", 30, api_url="http://leader:1").acquire(connection)
        assert term is not None
        with pytest.raises(LeaderLiveError) as refused:
            await leaderless.submit([new_task("refused")])
        assert (refused.value.holder, refused.value.api_url) == ("leader", "http://leader:1")
        assert refused.value.epoch == term.epoch
        with pytest.raises(LeaderLiveError):
            await leaderless.set_paused(True)
        assert await names(connection) == []
        assert await connection.fetchval("SELECT count(*) FROM state_writes") == writes
        assert await connection.fetchval("SELECT is_paused FROM scheduler") is False
        assert (await read_leadership(connection)).epoch == term.epoch
    finally:
        await connection.close()


async def test_a_write_ends_the_lapsed_term_so_its_leader_commits_nothing_after_it(
    pg_database: PgDatabase, state: PostgresState, leaderless: Leaderless
) -> None:
    """A leader paused past its lease still believes in its epoch: once a write was made with
    no leader, its fenced transactions fail, so its stale memory cannot undo the write."""
    old, observer = await pg_database.connect(), await pg_database.connect()
    try:
        term = await Lease("paused", SHORT).acquire(old)
        assert term is not None
        async with fenced(old, term.epoch):
            await old.execute(
                "INSERT INTO tasks (id, name, priority, cpus, mem, disk, gpus, ports, "
                "constraints, spec, max_attempts, created, queued, last_modified, state) "
                "VALUES (1, 'leader''s', 1, 0.1, 16, 0, 0, 0, '[]', '\\x7b7d', 1, 0, 0, 0, "
                "'QUEUED')"
            )
        await lapse(observer)
        assert await leaderless.cancel(1) is DeleteOutcome.CANCELED
        after = await read_leadership(observer)
        assert (after.epoch, after.holder, after.live) == (term.epoch + 1, None, False)
        with pytest.raises(FencedError):
            async with fenced(old, term.epoch):  # say, its launch intent for the task
                await old.execute("UPDATE tasks SET state = 'LAUNCHING' WHERE id = 1")
        assert await names(observer) == [(1, "leader's", "CANCELED")]
        # A second write finds no term to end: the epoch stays.
        await leaderless.set_paused(True)
        assert (await read_leadership(observer)).epoch == term.epoch + 1
        # The next election counts on from there.
        new = await Lease("next", 30).acquire(observer)
        assert new is not None
        assert new.epoch == term.epoch + 2
    finally:
        await old.close()
        await observer.close()


async def test_a_write_in_flight_holds_the_election_back_and_the_new_leader_loads_it(
    pg_database: PgDatabase, state: PostgresState
) -> None:
    """The write commits first; the election waits for it; the leader's load, after its
    election committed, sees the write."""
    contender, observer = await pg_database.connect(), await pg_database.connect()
    deciding, release = asyncio.Event(), asyncio.Event()

    async def decide(rows: LockedRows) -> tuple[Sequence[c.Change], int]:
        deciding.set()
        await release.wait()
        return [c.PauseSet(True, 2.0)], 0

    try:
        write = asyncio.ensure_future(state.commit_without_leader(decide))
        await asyncio.wait_for(deciding.wait(), timeout=10)
        election = asyncio.ensure_future(Lease("contender", 30).acquire(contender))
        await wait_until_blocked(observer, query_like="%UPDATE leadership%")
        assert not election.done()
        release.set()
        await asyncio.wait_for(write, timeout=10)
        term = await asyncio.wait_for(election, timeout=10)
        assert term is not None
        loaded = await state.load_scheduler()  # what the new leader loads after its election
        assert loaded is not None
        assert loaded.is_paused
    finally:
        release.set()
        await contender.close()
        await observer.close()


async def test_an_election_in_flight_makes_the_write_wait_then_refuse(
    pg_database: PgDatabase, leaderless: Leaderless
) -> None:
    """The election commits first: the write, which waited for it, finds the live term and
    changes nothing (the API then forwards it to the new leader)."""
    contender, observer = await pg_database.connect(), await pg_database.connect()
    try:
        transaction = contender.transaction()
        await transaction.start()
        term = await Lease("contender", 30, api_url="http://contender:1").acquire(contender)
        assert term is not None
        write = asyncio.ensure_future(leaderless.submit([new_task("late")]))
        await wait_until_blocked(observer, query_like="%FOR UPDATE%")
        assert not write.done()
        await transaction.commit()
        with pytest.raises(LeaderLiveError) as refused:
            await asyncio.wait_for(write, timeout=10)
        assert refused.value.holder == "contender"
        assert await names(observer) == []
    finally:
        await contender.close()
        await observer.close()


async def test_standbys_writing_at_once_take_turns_and_ids_never_collide(
    pg_database: PgDatabase, state: PostgresState
) -> None:
    other = await PostgresState.open(pg_database.dsn, Password(pg_database.password))
    try:
        first, second = Leaderless(state, state), Leaderless(other, other)
        batches: list[Any] = await asyncio.gather(
            *(
                standby.submit([new_task(f"{n}-a"), new_task(f"{n}-b")])
                for n, standby in enumerate([first, second] * 5)
            )
        )
        ids = [view.id for batch in batches for view in batch]
        assert sorted(ids) == list(range(1, 21))
    finally:
        await other.close()
