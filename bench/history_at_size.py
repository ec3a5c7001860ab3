"""History at size (issue 19, item 6): a database of millions of finished tasks.

``python -m bench.history_at_size [--tasks 10000000] [--live 1000] [--work DIR] [--write]
[--reuse] [--generate-only]``

1. ``generate``: a new database (the daemon's own migrations), then ``--tasks`` FINISHED tasks
   written directly with SQL (not through Mesos), ended over the last 20 days (inside the default
   30-day retention), plus ``--live`` queued tasks, and ``task_counts`` set to match.
2. ``restart``: the daemon as a real process (``scale-scheduler run``) against a fake master in
   ``idle`` mode, three times on that database: seconds until ``/status/`` answers with the
   scheduler subscribed. Target <= 10 s.
3. ``api``: with the daemon up, each read 20 times over HTTP (p50 and max ms): the first page of
   ``/tasks/?state=FINISHED`` and of ``/tasks/`` with their counts, a page in the middle by key
   (``after=``) and by number (``page=``, which steps over every row before it), the queued
   tasks, one task. Target < 100 ms (deep ``page=`` is reported, not targeted: use ``after=``).
4. ``prune``: the daemon restarted with ``state.retention_max_tasks`` 100,000 under the count, a
   pruning pass every second: how long pruning 100,000 tasks takes, and ``/status/`` p99 while
   it runs.

Prints one JSON object; ``--write`` also puts the "History at size" section in
``bench/RESULTS.md`` (which ``python -m bench`` keeps when it rewrites the file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bench.b1_offers import start_master
from bench.common import Settings, free_port, percentile
from bench.offer_stream import load_offers
from bench.procs import ROOT, Daemon, rss_mb, write_daemon_config
from scale_scheduler.state.sqlite.task_rows import INSERT_SQL
from scale_scheduler.state.store import Store
from scale_scheduler.state.tasks import TaskSpec, spec_encoder

SECTION = "## History at size"
CHUNK = 100_000
DAY = 86_400.0


async def _create(db: Path) -> None:
    store = await Store.open(db)  # the schema exactly as the daemon makes it
    await store.close()


def generate(db: Path, tasks: int, live: int) -> dict[str, Any]:
    """``tasks`` FINISHED tasks and ``live`` QUEUED ones, straight into SQLite."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    asyncio.run(_create(db))
    started = time.monotonic()
    now = time.time()
    rng = random.Random(19)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a bulk load: durability comes from the checkpoint
    spec = spec_encoder.encode(TaskSpec(name="history", command="./run --shard 1"))
    done_sql = (
        "UPDATE tasks SET state = 'FINISHED', attempts = 1, agent_id = ?, hostname = ?, "
        "launched = ?, started = ?, ended = ?, last_modified = ?, status_state = 'TASK_FINISHED', "
        "status_source = 'SOURCE_EXECUTOR', status_time = ? WHERE id = ?"
    )
    total = tasks + live
    for first in range(1, total + 1, CHUNK):
        last = min(total, first + CHUNK - 1)
        rows = []
        done = []
        for task_id in range(first, last + 1):
            # Created in id order over the last 20 days; ended a few seconds to minutes later.
            created = now - 20 * DAY * (1 - task_id / total)
            rows.append(
                (
                    task_id,
                    "history",
                    100,
                    0.1,
                    32.0,
                    0.0,
                    0,
                    0,
                    None,
                    spec,
                    1,
                    created,
                    created,
                    created,
                    None,  # task_group
                )
            )
            if task_id <= tasks:
                agent = task_id % 2000
                ended = created + rng.uniform(1, 600)
                done.append(
                    (
                        f"agent-{agent}",
                        f"host-{agent}",
                        created,
                        created + 0.5,
                        ended,
                        ended,
                        ended,
                        task_id,
                    )
                )
        conn.execute("BEGIN")
        conn.executemany(INSERT_SQL, rows)
        conn.executemany(done_sql, done)
        conn.execute("COMMIT")
    conn.execute("UPDATE task_counts SET n = ? WHERE state = 'FINISHED'", (tasks,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "tasks": tasks,
        "live": live,
        "seconds": round(time.monotonic() - started, 1),
        "database_mb": round(db.stat().st_size / 1e6, 1),
    }


def _start(work: Path, master_url: str, db: Path, state: dict[str, Any] | None = None) -> Daemon:
    port = free_port()
    config = work / "config.yaml"
    write_daemon_config(config, master=master_url, db=db, port=port)
    if state:
        raw = yaml.safe_load(config.read_text())
        raw["state"].update(state)
        config.write_text(yaml.safe_dump(raw))
    return Daemon(config, port, work / "daemon.log")


def _get(url: str) -> tuple[float, Any]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, body


def _timed(url: str, repeats: int = 20) -> dict[str, Any]:
    times = []
    body: Any = None
    for _ in range(repeats):
        ms, body = _get(url)
        times.append(ms)
    result: dict[str, Any] = {
        "p50_ms": round(percentile(times, 0.5), 1),
        "max_ms": round(max(times), 1),
    }
    if isinstance(body, dict) and "count" in body:
        result["count"] = body["count"]
        result["results"] = len(body["results"])
    return result


def measure_api(base: str, tasks: int) -> dict[str, Any]:
    middle = tasks // 2
    reads = {
        "finished_first_page": "/tasks/?state=FINISHED&page_size=100",
        "all_first_page": "/tasks/?page_size=100",
        "finished_middle_by_key": f"/tasks/?state=FINISHED&after={middle}&page_size=100",
        "all_middle_by_key": f"/tasks/?after={middle}&page_size=100",
        "finished_middle_by_page": f"/tasks/?state=FINISHED&page={middle // 100}&page_size=100",
        "queued_first_page": "/tasks/?state=QUEUED&page_size=100",
        "one_task": f"/tasks/{middle}/",
        "status": "/status/",
    }
    out = {}
    for name, path in reads.items():
        repeats = 5 if "by_page" in name else 20
        out[name] = _timed(base + path, repeats)
    return out


def measure_restarts(work: Path, master_url: str, db: Path, rounds: int = 3) -> list[float]:
    seconds = []
    for _ in range(rounds):
        daemon = _start(work, master_url, db)
        try:
            seconds.append(round(daemon.wait(subscribed=True, timeout=120), 2))
        finally:
            daemon.stop()
    return seconds


def measure_pruning(work: Path, master_url: str, db: Path, tasks: int) -> dict[str, Any]:
    prune = min(100_000, tasks // 2)
    keep = tasks - prune
    daemon = _start(work, master_url, db, {"retention_max_tasks": keep, "retention_interval": 1.0})
    try:
        daemon.wait(subscribed=True, timeout=120)
        status_ms: list[float] = []
        started = time.monotonic()
        finished_at = None
        while time.monotonic() - started < 600:
            ms, _ = _get(daemon.url + "/status/")
            status_ms.append(ms)
            _, page = _get(daemon.url + "/tasks/?state=FINISHED&page_size=1")
            if page["count"] <= keep:
                finished_at = time.monotonic() - started
                break
            time.sleep(0.01)
        # Then the pass gives the space back (incremental vacuum) and checkpoints: the metrics
        # show the file sizes as of the end of the last pass.
        before = _sizes(daemon.url)
        after = before
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            after = _sizes(daemon.url)
            if after[0] < before[0]:
                break
            time.sleep(0.2)
        return {
            "pruned": prune,
            "seconds_until_done": round(finished_at, 1) if finished_at else None,
            "database_mb_before": round(before[0] / 1e6, 1),
            "database_mb_after": round(after[0] / 1e6, 1),
            "wal_mb_after": round(after[1] / 1e6, 1),
            "status_p50_ms": round(percentile(status_ms, 0.5), 1),
            "status_p99_ms": round(percentile(status_ms, 0.99), 1),
            "status_samples": len(status_ms),
            "rss_mb": round(rss_mb(daemon.pid)[0], 1),
        }
    finally:
        daemon.stop()


def _sizes(base: str) -> tuple[float, float]:
    """``scale_scheduler_database_bytes`` and ``..._wal_bytes`` from ``/metrics``."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("scale_scheduler_database_bytes", "scale_scheduler_database_wal_bytes"):
            values[name] = float(value)
    return values["scale_scheduler_database_bytes"], values["scale_scheduler_database_wal_bytes"]


def run(tasks: int, live: int, work: Path, skip_generate: bool) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    db = work / "history.db"
    result: dict[str, Any] = {"tasks": tasks, "live": live}
    if not skip_generate or not db.exists():
        result["generate"] = generate(db, tasks, live)
    settings = Settings.full()
    settings.out = ROOT / "bench" / "out"  # where the recorded offers live (made if missing)
    load_offers(settings.offers_path)  # the fake master reads the recording: make it first
    master = start_master(settings, work, mode="idle")
    try:
        url = master.info["url"]
        result["restart_s"] = measure_restarts(work, url, db)
        daemon = _start(work, url, db)
        try:
            daemon.wait(subscribed=True, timeout=120)
            result["rss_mb"] = round(rss_mb(daemon.pid)[0], 1)
            result["api"] = measure_api(daemon.url, tasks)
        finally:
            daemon.stop()
        result["prune"] = measure_pruning(work, url, db, tasks)
    finally:
        master.stop()
    result["database_mb"] = round(db.stat().st_size / 1e6, 1)
    return result


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def render(result: dict[str, Any]) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    api = result["api"]
    gen = result.get("generate", {})
    prune = result["prune"]
    lines = [
        SECTION,
        "",
        f"Written by `python -m bench.history_at_size --tasks {result['tasks']} --write` on {when}"
        f", commit {_commit()} (not part of `make bench`: generating the database takes minutes;"
        " `python -m bench` keeps this section when it rewrites the file).",
        "",
        f"Database: {result['tasks']:,} FINISHED tasks written directly with SQL, plus "
        f"{result['live']:,} queued"
        + (f"; generated in {gen['seconds']} s" if gen else "")
        + f"; {result['database_mb']:,} MB after the pruning phase.",
        "",
        "| measure | target | measured |",
        "| --- | --- | --- |",
        "| restart until serving and subscribed (3 restarts) | <= 10 s | "
        + ", ".join(f"{s} s" for s in result["restart_s"])
        + " |",
        f"| daemon RSS after start | | {result['rss_mb']} MB |",
    ]
    labels = {
        "finished_first_page": "`GET /tasks/?state=FINISHED&page_size=100` (with its count)",
        "all_first_page": "`GET /tasks/?page_size=100` (count of every task)",
        "finished_middle_by_key": "`GET /tasks/?state=FINISHED&after=<middle id>&page_size=100`",
        "all_middle_by_key": "`GET /tasks/?after=<middle id>&page_size=100`",
        "queued_first_page": "`GET /tasks/?state=QUEUED&page_size=100`",
        "one_task": "`GET /tasks/<middle id>/`",
        "status": "`GET /status/`",
        "finished_middle_by_page": "`GET /tasks/?state=FINISHED&page=<middle>&page_size=100`",
    }
    for key, label in labels.items():
        row = api[key]
        target = "(reported)" if "by_page" in key else "< 100 ms"
        lines.append(f"| {label} | {target} | p50 {row['p50_ms']} ms, max {row['max_ms']} ms |")
    lines += [
        f"| pruning {prune['pruned']:,} tasks (count limit, batches of 2,000) | | "
        f"{prune['seconds_until_done']} s until the count was down |",
        f"| `GET /status/` while pruning ({prune['status_samples']} requests) | | "
        f"p50 {prune['status_p50_ms']} ms, p99 {prune['status_p99_ms']} ms |",
        f"| database file before / after the pass (incremental vacuum), WAL after | | "
        f"{prune['database_mb_before']:,} MB / {prune['database_mb_after']:,} MB, "
        f"{prune['wal_mb_after']:,} MB |",
        "",
    ]
    return "\n".join(lines)


def history_section(report: str) -> str:
    """This scenario's section of a report (``python -m bench`` keeps it when it rewrites)."""
    _, found, section = report.partition(SECTION)
    return found + section if found else ""


def write_section(text: str, path: Path = ROOT / "bench" / "RESULTS.md") -> None:
    current = path.read_text() if path.exists() else ""
    head, _, _ = current.partition(SECTION)
    path.write_text(head.rstrip() + "\n\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_at_size")
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--live", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "history")
    parser.add_argument("--reuse", action="store_true", help="reuse the database in --work")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument(
        "--generate-only", action="store_true", help="only write the database (work/history.db)"
    )
    args = parser.parse_args()
    if args.generate_only:
        args.work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(generate(args.work / "history.db", args.tasks, args.live)))
        return
    result = run(args.tasks, args.live, args.work, args.reuse)
    print(json.dumps(result))
    if args.write:
        write_section(render(result))


if __name__ == "__main__":
    main()
