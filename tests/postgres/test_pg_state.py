"""``PostgresState`` beyond the shared contract (``tests/foundation/test_state_contract.py``):
group commit, writes whose COMMIT went unanswered, a terminated session, an unreachable
database, and the epoch fence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pgproxy import PgProxy
from pgserver import PgDatabase
from structlog.testing import capture_logs

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.interface import StateFencedError, StateUnavailableError
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.leadership import Lease
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.tasks import Task, TaskSpec, spec_encoder

NOW = 1_700_000_000.0


def task(task_id: int) -> Task:
    spec = spec_encoder.encode(TaskSpec(name=f"t{task_id}", command="true"))
    return Task(task_id, 1, Shape(0.5, 64.0, 0.0, 0, 0, ()), spec, TaskState.QUEUED, 3)


def queued(*ids: int) -> c.TasksQueued:
    return c.TasksQueued([task(i) for i in ids], [f"t{i}" for i in ids], NOW)


@pytest.fixture
async def proxy(pg_database: PgDatabase) -> AsyncIterator[PgProxy]:
    proxy = PgProxy(pg_database)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def state(proxy: PgProxy) -> AsyncIterator[PostgresState]:
    """The state, reaching its database through ``proxy`` (so tests can cut the line)."""
    state = await PostgresState.open(
        proxy.dsn, Password(proxy.database.password), unavailable_after=0.5
    )
    await state.commit([c.SchedulerRowEnsured(NOW)])
    yield state
    await state.close()


async def rows(database: PgDatabase, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    connection = await database.connect()
    try:
        return [tuple(row) for row in await connection.fetch(sql, *args)]
    finally:
        await connection.close()


async def test_concurrent_writes_share_transactions_and_apply_in_commit_order(
    state: PostgresState,
) -> None:
    applied: list[int] = []
    observed: list[int] = []
    state.on_commit.append(lambda size, _seconds: observed.append(size))
    commits_before = state.stats.commits
    await asyncio.gather(
        *(state.commit([queued(i)], lambda i=i: applied.append(i)) for i in range(1, 301))
    )
    assert applied == list(range(1, 301))
    transactions = state.stats.commits - commits_before
    assert transactions < 30, transactions  # 300 writes, grouped (one per request would be 300)
    assert sum(observed) == 300
    assert len(observed) == transactions
    assert await state.count_tasks(TaskState.QUEUED) == 300


@pytest.mark.parametrize("reached_server", [True, False], ids=["committed", "never-committed"])
async def test_a_write_whose_commit_went_unanswered_is_applied_exactly_once(
    state: PostgresState, proxy: PgProxy, reached_server: bool
) -> None:
    """The connection drops at COMMIT: after the server committed (the answer is lost), or
    before it saw the COMMIT. Either way the caller gets success, memory's apply runs once, and
    the database holds the write once."""
    applied: list[str] = []
    cut = proxy.cut_next_commit(forward=reached_server)
    with capture_logs() as logs:
        result = await state.commit([queued(7, 8)], lambda: applied.append("t7+t8") or "ok")
    assert cut.done.is_set()
    assert result == "ok"
    assert applied == ["t7+t8"]
    assert await rows(proxy.database, "SELECT id FROM tasks ORDER BY id") == [(7,), (8,)]
    settled = [e for e in logs if e["event"] == "postgres_write_settled"]
    assert [e["landed"] for e in settled] == [reached_server]
    assert state.reconnects >= 1


async def test_a_session_terminated_mid_write_is_reconnected_and_the_write_made_once(
    state: PostgresState, pg_database: PgDatabase
) -> None:
    """``pg_terminate_backend`` of the writer's session while its transaction waits on a lock."""
    holder = await pg_database.connect()
    # Another session than the holder's: pg_stat_activity is read once per transaction, so
    # polled from the holder's open transaction it would keep its first, stale snapshot.
    observer = await pg_database.connect()
    applied: list[bool] = []
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("SELECT * FROM scheduler WHERE id = 1 FOR UPDATE")
        write = asyncio.create_task(
            state.commit([c.PauseSet(True, NOW + 1)], lambda: applied.append(True))
        )
        waiting_sql = (
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'UPDATE scheduler%'"
        )
        for _ in range(500):
            pids = [row["pid"] for row in await observer.fetch(waiting_sql)]
            if pids:
                break
            await asyncio.sleep(0.01)  # poll interval of this wait on a condition
        assert len(pids) == 1
        assert await observer.fetchval("SELECT pg_terminate_backend($1)", pids[0])
        await locked.rollback()
        await asyncio.wait_for(write, timeout=10)
    finally:
        await observer.close()
        await holder.close()
    assert applied == [True]
    scheduler = await state.load_scheduler()
    assert scheduler is not None
    assert scheduler.is_paused
    assert state.reconnects >= 1


async def test_an_unreachable_database_refuses_writes_and_reads_then_serves_again(
    state: PostgresState, proxy: PgProxy
) -> None:
    await state.commit([queued(1)])
    await proxy.stop()
    applied: list[int] = []
    with pytest.raises(StateUnavailableError, match="unreachable"):
        await state.commit([queued(2)], lambda: applied.append(2))
    with pytest.raises(StateUnavailableError, match="unreachable"):
        await state.task(1)
    assert applied == []
    await proxy.start()
    await state.commit([queued(3)], lambda: applied.append(3))
    assert applied == [3]
    assert await rows(proxy.database, "SELECT id FROM tasks ORDER BY id") == [(1,), (3,)]
    assert (await state.task(1)) is not None


async def test_a_deposed_epoch_commits_nothing(pg_database: PgDatabase) -> None:
    epoch: list[int | None] = [None]
    state = await PostgresState.open(
        pg_database.dsn, Password(pg_database.password), fence=lambda: epoch[0]
    )
    admin = await pg_database.connect()
    try:
        first = await Lease("a", 30).acquire(admin)
        assert first is not None
        epoch[0] = first.epoch
        await state.commit([c.SchedulerRowEnsured(NOW)])  # fenced by a current epoch
        assert await Lease("a", 30).release(admin, first)
        second = await Lease("b", 30).acquire(admin)
        assert second is not None
        assert second.epoch > first.epoch
        applied: list[bool] = []
        with pytest.raises(StateFencedError, match="no longer current"):
            await state.commit([c.PauseSet(True, NOW + 1)], lambda: applied.append(True))
        assert applied == []
        scheduler = await state.load_scheduler()
        assert scheduler is not None
        assert not scheduler.is_paused
    finally:
        await admin.close()
        await state.close()
