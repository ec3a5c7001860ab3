"""B3, a million queued: enqueue rate, resident memory, match time and restart time.

Against a fake master in ``idle`` mode (SUBSCRIBED, then heartbeats; no offers), the daemon as a
real process:

- ``enqueue``: ``tasks`` tasks through ``POST /queue/`` in batches of 10,000, two requests in
  flight, each answered only after its commit (WAL, ``synchronous=FULL``): tasks/s;
- ``rss``: the daemon's VmRSS (and peak VmHWM) 2 s after the last batch, and again after restart;
- ``restart``: SIGTERM, then a new process on the same database until ``/status/`` answers with
  the scheduler subscribed.

Then, in this process (pure code): the daemon's own start-up load (``TaskTracker.load``) of that
database, and ``match()`` of one OFFERS event (100 recorded offers, 32 cpus each: 3,200 tasks
placed per call) against the loaded queue, ``match_repeats`` times, with the garbage collector
as the daemon runs it, then after ``gc.freeze()``: p50/p99/max milliseconds and the number of
full (generation 2) collections that fell inside the timed calls. Then the same match over a
queue of that size where a tenth of the tasks carry scoped constraints (``b3_constrained``).

Then the same process figures and the same load and match with the daemon on PostgreSQL
(``state.backend: postgresql``, a database on a throwaway cluster the scenario starts:
``bench.pg_cluster``), under ``postgresql``, with their own calibration bracket.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import b3_constrained, pg_cluster
from bench.b1_offers import start_daemon, start_master
from bench.b2_launch import enqueue
from bench.calibration import Calibrator
from bench.common import Settings, percentile
from bench.offer_stream import OfferStream, load_offers
from bench.procs import rss_mb
from scale_scheduler.daemon.mesos.mesos_types import decode_event
from scale_scheduler.daemon.scheduling.matcher import MatchSettings, match
from scale_scheduler.daemon.scheduling.task_board import TaskBoard
from scale_scheduler.daemon.scheduling.task_path import build_task_path
from scale_scheduler.daemon.service.config import parse_config
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import read_password_file
from scale_scheduler.state.sqlite import SqliteState

Opener = Callable[[], Awaitable[StateStore]]
"""Opens the state the daemon wrote, for the in-process load."""


def measure_process(
    settings: Settings, work: Path, state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Enqueue, RSS, restart; ``state`` adds to the daemon's ``state`` settings (a backend)."""
    work.mkdir(parents=True, exist_ok=True)
    master = start_master(settings, work, mode="idle")
    db = work / "state.db"
    result: dict[str, Any] = {"tasks": settings.b3_tasks}
    try:
        daemon = start_daemon(work, master.info["url"], db=db, state=state)
        try:
            daemon.wait(subscribed=True, timeout=60)
            result["enqueue"] = enqueue(daemon.url, settings.b3_tasks, work)
            time.sleep(2.0)
            result["queue_depth"] = daemon.status()["queue_depth"]  # type: ignore[index]
            result["rss_mb"], result["hwm_mb"] = rss_mb(daemon.pid)
        finally:
            stopping = time.monotonic()
            result["stop_exit_code"] = daemon.stop()
            result["stop_s"] = time.monotonic() - stopping
        daemon = start_daemon(work, master.info["url"], db=db, state=state)
        try:
            result["restart_s"] = daemon.wait(subscribed=True, timeout=120)
            time.sleep(1.0)
            result["rss_after_restart_mb"], result["hwm_after_restart_mb"] = rss_mb(daemon.pid)
        finally:
            daemon.stop()
    finally:
        master.stop()
    return result


class _GcWatch:
    """Counts full collections and their time while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.full = 0
        self.full_s = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.armed or info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.full += 1
            self.full_s += time.perf_counter() - self._start


def _timed_matches(
    offers: list[Any], board: TaskBoard, repeats: int, watch: _GcWatch
) -> dict[str, Any]:
    settings = MatchSettings(5.0, 120.0)
    durations: list[float] = []
    placed = 0
    watch.full, watch.full_s = 0, 0.0
    for _ in range(repeats):
        watch.armed = True
        started = time.perf_counter()
        result = match(
            offers, board.index, scheduler_paused=False, blocked_hosts={}, settings=settings
        )
        durations.append((time.perf_counter() - started) * 1000)
        watch.armed = False
        placed = result.placed
        # Between passes the daemon allocates too (decoding, HTTP): let the young generations
        # fill as they would, so collections land where they land in the daemon.
        _garbage = [[i] for i in range(2000)]
        del _garbage
    return {
        "p50_ms": percentile(durations, 0.50),
        "p99_ms": percentile(durations, 0.99),
        "max_ms": max(durations),
        "placed_per_match": placed,
        "full_collections": watch.full,
        "full_collection_s": watch.full_s,
    }


def sqlite_opener(db: Path) -> Opener:
    async def open_state() -> StateStore:
        return await SqliteState.open(db)

    return open_state


def postgresql_opener(state: dict[str, Any]) -> Opener:
    async def open_state() -> StateStore:
        password = read_password_file(state["password_file"])
        return await PostgresState.open(state["dsn"], password)

    return open_state


async def _load_and_match(open_state: Opener, settings: Settings) -> dict[str, Any]:
    config = parse_config({}, environ={})
    store = await open_state()
    try:
        nodes = NodeRepository(store, time.time)
        await nodes.load()
        tasks = build_task_path(config.scheduler, store, None, nodes, time.time, lambda: None)  # type: ignore[arg-type]
        board = tasks.board
        started = time.perf_counter()
        await tasks.tracker.load()
        load_s = time.perf_counter() - started
    finally:
        await store.close()
    stream = OfferStream(load_offers(settings.offers_path))
    event = decode_event(stream.payloads(1)[0])
    assert event.offers is not None
    offers = list(event.offers.offers)
    watch = _GcWatch()
    gc.callbacks.append(watch)
    try:
        default = _timed_matches(offers, board, settings.b3_match_repeats, watch)
        gc.freeze()
        frozen = _timed_matches(offers, board, settings.b3_match_repeats, watch)
    finally:
        gc.unfreeze()
        gc.callbacks.remove(watch)
    return {
        "queued_loaded": board.queue_depth,
        "load_s": load_s,
        "offers": len(offers),
        "gc_default": default,
        "gc_frozen": frozen,
        "repeats": settings.b3_match_repeats,
    }


def run(settings: Settings) -> dict[str, Any]:
    """The process figures, then the in-process match, with a calibration sample before, between
    and after them: the process figures (enqueue, restart) are judged by the mean of the first
    two, the match by the mean of the last two (``bench.calibration``)."""
    work = settings.work / "b3"
    calibrator = Calibrator.for_run(settings)
    before = calibrator.sample()
    result = measure_process(settings, work)
    between = calibrator.sample()
    result["match"] = asyncio.run(_load_and_match(sqlite_opener(work / "state.db"), settings))
    after = calibrator.sample()
    result["match_constrained"] = b3_constrained.run(settings)
    last = calibrator.sample()
    result["match_constrained"]["calibration"] = {
        "before": after,
        "after": last,
        "rate": (after + last) / 2,
    }
    result["calibration"] = {"before": before, "after": between, "rate": (before + between) / 2}
    result["match"]["calibration"] = {
        "before": between,
        "after": after,
        "rate": (between + after) / 2,
    }
    result["postgresql"] = run_postgresql(settings, calibrator, last)
    return result


def run_postgresql(settings: Settings, calibrator: Calibrator, before: float) -> dict[str, Any]:
    """The process figures and the load and match on PostgreSQL, bracketed as SQLite's are
    (``before`` is the sample that ended the SQLite part)."""
    try:
        with pg_cluster.cluster() as server:
            state = server.state_settings("b3")
            result = measure_process(settings, settings.work / "b3-postgresql", state)
            between = calibrator.sample()
            result["match"] = asyncio.run(_load_and_match(postgresql_opener(state), settings))
    except RuntimeError as exc:
        return {"error": f"no PostgreSQL: {exc}"[:1000]}
    after = calibrator.sample()
    result["calibration"] = {"before": before, "after": between, "rate": (before + between) / 2}
    result["match"]["calibration"] = {
        "before": between,
        "after": after,
        "rate": (between + after) / 2,
    }
    return result
