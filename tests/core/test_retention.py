"""Retention of finished tasks: the age and count limits, live tasks never pruned, counts that
stay exact, ids never reused, a pass stopped mid-way, space given back. The tasks go through the
real task tracker and store (settable clock, fake driver); the pruner runs passes on demand."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from corekit import Clock, CoreHarness, make_offer, status

from scale_scheduler.daemon.service.pruner import Pruner
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.interface import PageUsage, RetentionMark
from scale_scheduler.state.migrations import MIGRATIONS
from scale_scheduler.state.retention import DAY, RetentionPolicy
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.sqlite.task_rows import count_tasks, fetch_task_rows
from scale_scheduler.state.store import Store


@pytest.fixture
def harness(sqlite_harness: CoreHarness) -> CoreHarness:
    """These tests read the SQLite file itself (rows, pages, the WAL)."""
    return sqlite_harness


async def load_mark(store: Store) -> RetentionMark:
    return await SqliteState(store).retention_mark()


async def run_to(h: CoreHarness, state: str, count: int, **kw: object) -> list[int]:
    """Submit ``count`` tasks, launch them in one offer pass, and end them in ``state``."""
    ids = await h.submit(count, **kw)
    await h.offer_pass(make_offer(f"o-{ids[0]}", "a1", cpus=count * 4, mem=count * 4096))
    await h.updates(*(status(f"{i}-1", state) for i in ids))
    return ids


async def present(store: Store) -> set[int]:
    return {row[0] for row in await store.fetchall("SELECT id FROM tasks")}


async def assert_counts_exact(store: Store) -> None:
    """``task_counts`` (what the API reads) equals a real count of every terminal state."""
    real = dict(await store.fetchall("SELECT state, COUNT(*) FROM tasks GROUP BY state"))
    for state in TaskState:
        if state.terminal:
            assert await count_tasks(store, state) == real.get(state.value, 0), state
    assert await count_tasks(store, None) == sum(real.values())


def pruner(store: Store, clock: Clock, days: float = 0, max_tasks: int = 0, **kw: int) -> Pruner:
    return Pruner(
        SqliteState(store), RetentionPolicy(days, max_tasks), interval=3600, clock=clock, **kw
    )


async def test_age_limit_prunes_tasks_ended_before_it_and_never_a_live_one(
    harness: CoreHarness, clock: Clock
) -> None:
    await harness.start()
    (waiting,) = await harness.submit(1, cpus=1000)  # created first, stays queued: live
    old = await run_to(harness, "TASK_FINISHED", 5)
    clock.advance(10 * DAY)
    newer = await run_to(harness, "TASK_FAILED", 5)
    running = await harness.submit(2)
    await harness.offer_pass(make_offer("o-run", "a1", cpus=8, mem=8192))
    await harness.updates(*(status(f"{i}-1", "TASK_RUNNING") for i in running))
    p = pruner(harness.store, clock, days=30)

    clock.advance(25 * DAY)  # old ended 35 days ago, newer 25
    assert await p.run_pass() == 5
    assert await present(harness.store) == {waiting, *newer, *running}
    clock.advance(10 * DAY)
    assert await p.run_pass() == 5
    assert await present(harness.store) == {waiting, *running}
    assert await p.run_pass() == 0
    assert p.pruned == 10
    assert p.pruned_through == max(newer)
    assert all(p.was_pruned(i) for i in old + newer)
    assert not p.was_pruned(max(running) + 1)
    await assert_counts_exact(harness.store)


async def test_count_limit_keeps_the_newest_terminal_tasks_in_small_batches(
    harness: CoreHarness, clock: Clock
) -> None:
    core = await harness.start()
    (waiting,) = await harness.submit(1, cpus=1000)
    finished = await run_to(harness, "TASK_FINISHED", 6)
    killed = await harness.submit(
        2
    )  # killed through the API (a KILLED nobody asked for is retried)
    await harness.offer_pass(make_offer("o-k", "a1", cpus=8, mem=8192))
    for task_id in killed:
        await core.tracker.delete(task_id)
    await harness.updates(*(status(f"{i}-1", "TASK_KILLED") for i in killed))
    (canceled,) = await harness.submit(1)
    await core.tracker.delete(canceled)
    ended = [*finished, *killed, canceled]
    p = pruner(harness.store, clock, max_tasks=4, batch=3)

    assert await p.run_pass() == len(ended) - 4
    assert await present(harness.store) == {waiting, *ended[-4:]}
    mark = await load_mark(harness.store)
    assert mark.pruned_through == ended[-5] == p.pruned_through
    assert mark.pruned_total == len(ended) - 4
    assert await count_tasks(harness.store, TaskState.FINISHED) == 1
    assert await count_tasks(harness.store, TaskState.KILLED) == 2
    assert await count_tasks(harness.store, TaskState.CANCELED) == 1
    await assert_counts_exact(harness.store)
    assert await p.run_pass() == 0


async def test_no_limit_keeps_everything(harness: CoreHarness, clock: Clock) -> None:
    await harness.start()
    ids = await run_to(harness, "TASK_FINISHED", 3)
    clock.advance(10_000 * DAY)
    assert await pruner(harness.store, clock).run_pass() == 0
    assert await present(harness.store) == set(ids)


async def test_pruned_ids_are_never_given_again(harness: CoreHarness, clock: Clock) -> None:
    await harness.start()
    ids = await run_to(harness, "TASK_FINISHED", 3)
    assert await pruner(harness.store, clock, max_tasks=1).run_pass() == 2
    await pruner(harness.store, clock, days=1).run_pass()  # even the newest: the table is empty
    clock.advance(2 * DAY)
    assert await pruner(harness.store, clock, days=1).run_pass() == 1
    assert await present(harness.store) == set()
    await harness.c.stop()  # a restart of the core: ids come from the database again
    harness.core = None
    await harness.start()
    assert await harness.submit(1) == [max(ids) + 1]


async def test_a_pass_stopped_mid_way_leaves_a_consistent_database(
    harness: CoreHarness, clock: Clock, tmp_path: Path
) -> None:
    await harness.start()
    ids = await run_to(harness, "TASK_FINISHED", 20)
    await harness.c.stop()
    harness.core = None
    store = harness.store
    p = Pruner(SqliteState(store), RetentionPolicy(0, 2), interval=0.001, clock=clock, batch=3)
    commits = 0
    stopping: list[asyncio.Task[None]] = []
    stop_requested = asyncio.Event()

    def stop_after_two_batches(group_size: int, seconds: float) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:  # the second batch is committing: stop while the pass goes on
            stopping.append(asyncio.get_running_loop().create_task(p.stop()))
            stop_requested.set()

    store.on_commit.append(stop_after_two_batches)
    await p.start()
    await asyncio.wait_for(stop_requested.wait(), timeout=10)
    await stopping[0]
    store.on_commit.remove(stop_after_two_batches)
    assert not p.running
    assert p.pruned == 6  # two batches of three, then stopped: the pass had 18 to prune

    reopened = await Store.open(store.path)  # the database as a restarted daemon finds it
    try:
        mark = await load_mark(reopened)
        missing = set(ids) - await present(reopened)
        assert mark.pruned_total == len(missing) == 6
        assert mark.pruned_through == max(missing)
        await assert_counts_exact(reopened)
        after = pruner(reopened, clock, max_tasks=2)
        await after.start()
        assert after.pruned_through == mark.pruned_through
        assert await after.run_pass() == 12
        assert await present(reopened) == set(ids[-2:])
        assert (await load_mark(reopened)).pruned_total == 18
        await assert_counts_exact(reopened)
        await after.stop()
    finally:
        await reopened.close()


async def test_space_is_given_back_and_the_wal_checkpointed(
    harness: CoreHarness, clock: Clock
) -> None:
    await harness.start()
    big = "x" * 4000
    ids = await harness.submit(300, env={"PAD": big})
    await harness.offer_pass(make_offer("o-big", "a1", cpus=300 * 4, mem=300 * 4096))
    await harness.updates(*(status(f"{i}-1", "TASK_FINISHED") for i in ids))
    await harness.store.maintain("PRAGMA wal_checkpoint(TRUNCATE)")
    p = pruner(harness.store, clock, max_tasks=1, batch=100)
    await p.start()  # reads the sizes
    await p.stop()
    assert (await harness.store.fetchone("PRAGMA auto_vacuum")) == (2,)  # INCREMENTAL
    before = p.sizes.database
    assert before > 300 * 4000
    assert await p.run_pass() == 299
    assert p.sizes.database < before / 4
    assert (await harness.store.fetchone("PRAGMA freelist_count")) == (0,)
    assert await harness.store.truncate_wal(wait_ms=50)
    await p.run_pass()  # reads the sizes again
    assert p.sizes.wal == 0


async def pages(store: Store) -> PageUsage:
    return await SqliteState(store).page_usage()


async def test_at_steady_state_freed_pages_are_kept_for_reuse_and_a_large_prune_gives_back(
    harness: CoreHarness, clock: Clock
) -> None:
    """Each round ends as many tasks as the pass then prunes: the pages a pass frees are what
    the next round's writes take, so the file keeps its size (no shrinking only to grow again).
    A prune far beyond that demand still gives the excess back."""
    await harness.start()
    big = "x" * 4000
    round_size = 40
    p = pruner(harness.store, clock, max_tasks=2 * round_size, batch=25)
    sizes: list[int] = []
    for _ in range(6):
        await run_to(harness, "TASK_FINISHED", round_size, env={"PAD": big})
        await p.run_pass()
        usage = await pages(harness.store)
        sizes.append(usage.in_use + usage.free)
    # The first passes learn the demand (the first keeps nothing); then the file holds steady
    # and the freed pages wait for the next round instead of going back.
    assert usage.free >= round_size
    assert max(sizes[-3:]) - min(sizes[-3:]) <= 2, sizes  # a page either way (index splits)

    p.policy = RetentionPolicy(0, 1)
    assert await p.run_pass() == 2 * round_size - 1
    after = await pages(harness.store)
    assert after.free < round_size * 2  # at most one round's demand (and its index pages) kept
    assert after.in_use + after.free < sizes[-1] - round_size
    await assert_counts_exact(harness.store)


def _version_2_database(path: Path) -> None:
    """A database as the previous release left it: schema version 2, tasks in several states."""
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        conn.executescript(migration.sql)
    conn.execute("PRAGMA user_version = 2")
    insert = (
        "INSERT INTO tasks (id, name, state, priority, cpus, mem, disk, gpus, ports, spec, "
        "max_attempts, created, queued, last_modified) "
        "VALUES (?, 't', ?, 100, 1, 1, 0, 0, 0, x'7b7d', 1, 0, 0, 0)"
    )
    states = ["FINISHED"] * 5 + ["FAILED"] * 2 + ["CANCELED", "QUEUED", "RUNNING"]
    conn.executemany(insert, list(enumerate(states, start=1)))
    conn.close()


async def test_upgrade_counts_the_history_already_there(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await asyncio.to_thread(_version_2_database, path)
    store = await Store.open(path)
    try:
        assert await count_tasks(store, TaskState.FINISHED) == 5
        assert await count_tasks(store, TaskState.FAILED) == 2
        assert await count_tasks(store, None) == 10
        await assert_counts_exact(store)
        assert await load_mark(store) == RetentionMark(0, 0)
    finally:
        await store.close()


class EndingBetweenReads:
    """The store, but a running task ends (a status burst commits) after every read."""

    def __init__(self, harness: CoreHarness, running: list[int]) -> None:
        self.harness = harness
        self.running = list(running)
        self.reads = 0

    async def _then_end_one(self) -> None:
        self.reads += 1
        if self.running:
            await self.harness.updates(status(f"{self.running.pop()}-1", "TASK_FINISHED"))

    async def fetchall(self, sql: str, params: object = ()) -> list[tuple[object, ...]]:
        rows = await self.harness.store.fetchall(sql, params)  # type: ignore[arg-type]
        await self._then_end_one()
        return rows

    async def fetchone(self, sql: str, params: object = ()) -> tuple[object, ...] | None:
        row = await self.harness.store.fetchone(sql, params)  # type: ignore[arg-type]
        await self._then_end_one()
        return row


async def test_a_page_and_its_count_agree_while_tasks_end(harness: CoreHarness) -> None:
    """The count of every task is history plus live work: read apart, a task ending in between
    is counted in neither (or both). The page and its count come from one snapshot."""
    await harness.start()
    await run_to(harness, "TASK_FINISHED", 3)
    running = await harness.submit(6)
    await harness.offer_pass(make_offer("o-run", "a1", cpus=24, mem=24576))
    await harness.updates(*(status(f"{i}-1", "TASK_RUNNING") for i in running))
    store = EndingBetweenReads(harness, running)
    count, rows = await fetch_task_rows(store, None, 0, 100)  # type: ignore[arg-type]
    assert store.reads >= 1
    assert len(store.running) < len(running)  # tasks did end meanwhile
    assert count == len(rows) == 9
    finished_count, finished = await fetch_task_rows(store, TaskState.FINISHED, 0, 100)  # type: ignore[arg-type]
    assert finished_count == len(finished)
