"""Retention in the whole daemon (in process, against the simulated cluster): pruning while
tasks launch and finish, the 404 of a pruned task, the metrics, keyset paging of /tasks/."""

from __future__ import annotations

import asyncio
from pathlib import Path

from daemonkit import Daemon, running_daemon, task
from yarl import URL

from scale_scheduler.api.app import STORE
from scale_scheduler.api.keys import PRUNER
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.sqlite.task_rows import count_tasks

KEEP = 40


def retention(**values: object) -> dict[str, object]:
    return {"retention_max_tasks": KEEP, "retention_interval": 0.02, **values}


async def watch_live_rows(daemon: Daemon, stop: asyncio.Event) -> int:
    """Until ``stop``: every task the tracker holds (live: memory follows the commits) has its
    row. Returns how many checks ran."""
    store = daemon.app[STORE]
    checks = 0
    while not stop.is_set():
        live = list(daemon.core.board.tasks)
        if live:
            rows = await store.fetchall(
                f"SELECT COUNT(*) FROM tasks WHERE id IN ({','.join('?' * len(live))})", live
            )
            # A task may end (leave memory) between the two reads; never lose its row while live.
            still_live = [i for i in live if i in daemon.core.board.tasks]
            assert rows[0][0] >= len(still_live), "a live task's row is gone"
            checks += 1
        await asyncio.sleep(0.005)  # poll interval of the watcher
    return checks


async def test_pruning_while_tasks_launch_loses_nothing_and_keeps_counts_exact(
    tmp_path: Path,
) -> None:
    total = 1200
    async with running_daemon(tmp_path, agents=10, state=retention()) as daemon:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_live_rows(daemon, stop))
        ids: list[int] = []
        for start in range(0, total, 100):
            ids += await daemon.submit([task(f"t{i}") for i in range(start, start + 100)])
            await asyncio.sleep(0.02)  # paced: a steady feed, so pruning passes interleave with it
        core, pruner, store = daemon.core, daemon.app[PRUNER], daemon.app[STORE]
        assert pruner.pruned > 0, "no pruning pass ran while tasks were being fed"
        await daemon.until(lambda: not core.board.tasks, timeout=60)
        await daemon.until(lambda: pruner.pruned >= total - KEEP, timeout=20)
        stop.set()
        assert await watcher > 0
        assert pruner.pruned == total - KEEP
        assert core.board.ended_counts == {TaskState.FINISHED: total}
        assert await daemon.count("FINISHED") == KEEP
        mark = await SqliteState(store).retention_mark()
        assert mark.pruned_total == total - KEEP
        assert await count_tasks(store, TaskState.FINISHED) == KEEP
        remaining = {row[0] for row in await store.fetchall("SELECT id FROM tasks")}
        assert remaining == set(ids[-KEEP:])  # the newest are kept
        assert daemon.sim.record.launched_more_than_once() == {}
        listing = await (await daemon.client.get("/tasks/?state=FINISHED&page_size=1")).json()
        assert listing["count"] == KEEP
        samples = await daemon.scrape()
        assert samples.get("scale_scheduler_tasks_pruned_total") == total - KEEP
        assert samples.get("scale_scheduler_database_bytes") > 0


async def test_a_pruned_task_answers_404_saying_retention_removed_it(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, state=retention(retention_max_tasks=1)) as daemon:
        first, second = await daemon.submit([task("a"), task("b")])
        pruner = daemon.app[PRUNER]
        await daemon.until(lambda: pruner.pruned == 1)
        expected = (
            f"Task {first} was removed by retention "
            "(state.retention_days=30, state.retention_max_tasks=1)."
        )
        for method in ("GET", "DELETE"):
            response = await daemon.client.request(method, f"/tasks/{first}/")
            assert response.status == 404
            assert response.content_type == "text/plain"
            assert await response.text() == expected + "\n"
        assert (await daemon.task(second))["state"] == "FINISHED"
        never = await daemon.client.get(f"/tasks/{second + 1}/")
        assert never.status == 404
        assert await never.text() == f"No task with id {second + 1}.\n"


async def test_keyset_paging_of_tasks(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        ids = await daemon.submit([task(f"k{i}") for i in range(5)])
        await daemon.until(lambda: not daemon.core.board.tasks)
        client = daemon.client
        page = await (await client.get(f"/tasks/?state=finished&after={ids[0]}&page_size=2")).json()
        assert [t["id"] for t in page["results"]] == ids[1:3]
        assert page["count"] == 5
        assert page["previous"] is None
        page = await (await client.get(URL(page["next"]).path_qs)).json()
        assert [t["id"] for t in page["results"]] == ids[3:5]
        page = await (await client.get(URL(page["next"]).path_qs)).json()
        assert page["results"] == []
        assert page["next"] is None
        both = f"/tasks/?after={ids[0]}&page=2&page_size=2&state=FINISHED"
        page = await (await client.get(both)).json()  # pages count from the id
        assert [t["id"] for t in page["results"]] == ids[3:5]
        assert "page=" not in page["next"]
        assert f"after={ids[4]}" in page["next"]
        for query, message in [
            ("after=-1", "'after' must be a task id"),
            ("after=x", "'after' must be a task id"),
        ]:
            response = await client.get(f"/tasks/?{query}")
            assert response.status == 400
            assert message in await response.text()
