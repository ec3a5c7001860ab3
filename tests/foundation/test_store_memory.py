"""The store's writer keeps nothing of a committed group while it waits for the next write: a
group's rows and apply closures can reference thousands of tasks (issue 19, bounded memory)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from scale_scheduler.state.store import Statement, Store


class Rows(list[tuple[int, str]]):
    """A row list that can be weakly referenced."""


async def test_a_committed_write_is_not_held_while_the_writer_waits(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    try:
        await store.write([Statement("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")])
        rows = Rows([(i, "x") for i in range(100)])
        applied: list[bool] = []

        def apply() -> None:
            applied.append(True)

        watched = (weakref.ref(rows), weakref.ref(apply))
        await store.write([Statement("INSERT INTO t (k, v) VALUES (?, ?)", rows)], apply)
        assert applied == [True]
        del rows, apply
        gc.collect()
        # The writer is now idle, waiting for the next write.
        assert [ref() for ref in watched] == [None, None]
        assert await store.fetchone("SELECT COUNT(*) FROM t") == (100,)
    finally:
        await store.close()


async def test_no_write_of_a_committed_group_is_held_while_the_writer_waits(
    tmp_path: Path,
) -> None:
    """Several writes committed as one group: the last of them is not held either."""
    store = await Store.open(tmp_path / "s.db")
    try:
        await store.write([Statement("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")])
        batches = [Rows([(100 * b + i, "x") for i in range(100)]) for b in range(4)]
        watched = [weakref.ref(rows) for rows in batches]
        writes = [
            asyncio.ensure_future(store.write([Statement("INSERT INTO t VALUES (?, ?)", rows)]))
            for rows in batches
        ]
        await asyncio.gather(*writes)
        assert store.stats.last_group_size > 1  # they were committed together
        del batches, writes
        gc.collect()
        assert [ref() for ref in watched] == [None] * 4
        assert await store.fetchone("SELECT COUNT(*) FROM t") == (400,)
    finally:
        await store.close()
