"""The SQLite store: WAL + FULL sync, migrations, group commit, apply-after-commit, clean close."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from scale_scheduler.state import migrations as migrations_module
from scale_scheduler.state.migrations import Migration
from scale_scheduler.state.scheduler import SchedulerRepository, SchedulerRowMissingError
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import (
    MissingRowError,
    Statement,
    Store,
    StoreClosedError,
    StoreError,
)

CREATE = Statement("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")


async def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    try:
        journal = await store.fetchone("PRAGMA journal_mode")
        assert journal == ("wal",)
        version = await store.fetchone("PRAGMA user_version")
        assert version == (migrations_module.MIGRATIONS[-1].version,)
        # synchronous is per connection: check the writer's through a write-path query.
        sync = await store._db.execute("PRAGMA synchronous")
        assert (await sync.fetchone())[0] == 2  # FULL
    finally:
        await store.close()


async def test_migrations_are_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    await store.close()
    store = await Store.open(path)  # reopening applies nothing twice (would fail: table exists)
    tables = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert ("scheduler",) in tables
    assert ("framework",) in tables
    await store.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreError, match="newer than this program knows"):
        await Store.open(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "is a directory, not a database file"),
        (b"\x00garbage" * 500, "file is not a database"),
    ],
)
async def test_an_unusable_file_is_a_store_error_naming_it(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "s.db"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(StoreError) as raised:
        await Store.open(path)
    assert str(raised.value) == f"{path}: {problem}"


async def test_failed_migration_leaves_schema_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [
        *migrations_module.MIGRATIONS,
        Migration(99, "broken", "CREATE TABLE ok_table (x INTEGER); SELECT * FROM no_such_table;"),
    ]
    monkeypatch.setattr("scale_scheduler.state.store.MIGRATIONS", broken)
    with pytest.raises(StoreError, match=r"s\.db: migration 99 \(broken\) failed: no such table"):
        await Store.open(tmp_path / "s.db")
    with sqlite3.connect(tmp_path / "s.db") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert "ok_table" not in names
    assert version == migrations_module.MIGRATIONS[-1].version


async def test_concurrent_writes_share_one_commit(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    await store.write([CREATE])
    commits_before = store.stats.commits
    results = await asyncio.gather(
        *(
            store.write(
                [Statement("INSERT INTO t (k, v) VALUES (?, ?)", [(i, f"v{i}")])], lambda i=i: i
            )
            for i in range(200)
        )
    )
    assert results == list(range(200))
    assert store.stats.commits - commits_before < 200 / 4  # grouped, not one fsync each
    assert store.stats.writes >= 200
    rows = await store.fetchall("SELECT count(*) FROM t")
    assert rows == [(200,)]
    await store.close()


async def test_a_bad_write_fails_alone(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    await store.write([CREATE])
    good = [Statement("INSERT INTO t (k, v) VALUES (?, ?)", [(i, "ok")]) for i in range(5)]
    bad = Statement("INSERT INTO t (k, v) VALUES (?, ?)", [(100, None)])  # NOT NULL
    outcomes = await asyncio.gather(
        *(store.write([s]) for s in [*good[:2], bad, *good[2:]]), return_exceptions=True
    )
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    assert [o for i, o in enumerate(outcomes) if i != 2] == [None] * 5
    assert await store.fetchall("SELECT k FROM t ORDER BY k") == [(i,) for i in range(5)]
    await store.close()


async def test_apply_runs_after_the_commit_is_visible(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    await store.write([CREATE])
    seen: list[int] = []

    def apply() -> None:
        # another connection sees the row: the commit happened before memory changed
        with sqlite3.connect(path) as conn:
            seen.append(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    await store.write([Statement("INSERT INTO t (k, v) VALUES (1, 'x')")], apply)
    assert seen == [1]
    await store.close()


async def test_apply_does_not_run_when_the_write_fails(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    applied: list[bool] = []
    with pytest.raises(sqlite3.OperationalError):
        await store.write(
            [Statement("INSERT INTO missing VALUES (1)")], lambda: applied.append(True)
        )
    assert applied == []
    await store.close()


async def test_checked_statement_reports_missing_row(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    await store.write([CREATE])
    applied: list[bool] = []
    with pytest.raises(MissingRowError, match="row 7 is gone"):
        await store.write(
            [
                Statement(
                    "UPDATE t SET v = 'y' WHERE k = 7",
                    expect_rows=True,
                    missing_message="row 7 is gone",
                ),
                Statement("INSERT INTO t (k, v) VALUES (8, 'skipped')"),
            ],
            lambda: applied.append(True),
        )
    assert applied == []
    assert await store.fetchall("SELECT k FROM t") == []
    await store.close()


async def test_close_finishes_queued_writes_then_refuses(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    await store.write([CREATE])
    pending = [
        asyncio.ensure_future(
            store.write([Statement("INSERT INTO t (k, v) VALUES (?, 'x')", [(i,)])])
        )
        for i in range(50)
    ]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    with pytest.raises(StoreClosedError):
        await store.write([CREATE])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 50


async def test_scheduler_row_is_ensured_once_and_pause_persists(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    repo = SchedulerRepository(SqliteState(store))
    assert (await repo.ensure_and_load()).is_paused is False
    await repo.set_paused(True)
    await store.close()

    store = await Store.open(path)
    repo = SchedulerRepository(SqliteState(store))
    assert (await repo.ensure_and_load()).is_paused is True
    assert await store.fetchall("SELECT count(*) FROM scheduler") == [(1,)]
    await store.close()


async def test_pause_write_says_whether_it_changed_the_flag(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    repo = SchedulerRepository(SqliteState(store))
    await repo.ensure_and_load()
    answers = [await repo.set_paused(flag) for flag in (True, True, False)]
    assert [(a.is_paused, a.changed) for a in answers] == [
        (True, True),
        (True, False),
        (False, True),
    ]
    await store.close()


async def test_missing_scheduler_row_is_not_recreated_while_running(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    repo = SchedulerRepository(SqliteState(store))
    await repo.ensure_and_load()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM scheduler")
    with pytest.raises(SchedulerRowMissingError):
        await repo.check_row()
    with pytest.raises(SchedulerRowMissingError):
        await repo.set_paused(True)
    assert repo.state.is_paused is False  # memory untouched by the failed write
    assert await store.fetchall("SELECT count(*) FROM scheduler") == [(0,)]
    await store.close()


async def test_a_read_after_an_acknowledged_write_sees_it(tmp_path: Path) -> None:
    """Read-your-writes under concurrent reads: while readers keep large SELECTs going on the
    shared reader connection, a read that starts after a write was acknowledged must see it."""
    store = await Store.open(tmp_path / "s.db")
    await store.write([CREATE])
    await store.write([Statement("INSERT INTO t (k, v) VALUES (?, 'filler')", _filler(3000))])
    stop = asyncio.Event()
    missed: list[int] = []

    async def keep_reading() -> None:
        # Like GET /tasks/ pages: a count, a page, then loop time spent rendering the page.
        while not stop.is_set():
            await store.fetchone("SELECT COUNT(*) FROM t")
            rows = await store.fetchall("SELECT k, v FROM t ORDER BY k LIMIT 2000")
            json.dumps(rows * 5)

    async def write_then_read(client: int) -> None:
        for round_ in range(20):
            key = 1_000_000 + client * 100 + round_
            await store.write([Statement("INSERT INTO t (k, v) VALUES (?, 'new')", [(key,)])])
            if await store.fetchone("SELECT v FROM t WHERE k = ?", (key,)) is None:
                missed.append(key)
            if await store.fetchall("SELECT v FROM t WHERE k = ?", (key,)) == []:
                missed.append(key)

    readers = [asyncio.create_task(keep_reading()) for _ in range(8)]
    try:
        await asyncio.gather(*(write_then_read(c) for c in range(25)))
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await store.close()
    assert missed == [], f"{len(missed)} acknowledged rows were missing from a later read"


def _filler(count: int) -> list[tuple[int]]:
    return [(k,) for k in range(count)]


async def free_pages(store: Store) -> int:
    row = await store.fetchone("PRAGMA freelist_count")
    assert row is not None
    return int(row[0])


async def test_a_vacuum_step_gives_back_as_many_pages_as_it_names(tmp_path: Path) -> None:
    """One write per step: run through ``execute``, the pragma gave back a single page."""
    store = await Store.open(tmp_path / "s.db")
    try:
        await store.write([CREATE])
        await store.write(
            [Statement("INSERT INTO t VALUES (?, ?)", [(k, "x" * 3000) for k in range(400)])]
        )
        await store.write([Statement("DELETE FROM t")])
        free = await free_pages(store)
        assert free >= 400
        await store.incremental_vacuum(150)
        assert await free_pages(store) == free - 150
        pages = await SqliteState(store).page_usage()
        assert pages.free == free - 150

        assert await SqliteState(store).reclaim_space(keep_free=20) == free - 170
        assert await free_pages(store) == 20
        assert await SqliteState(store).reclaim_space() == 20
        assert await free_pages(store) == 0
    finally:
        await store.close()
