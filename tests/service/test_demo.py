"""``scale-scheduler demo`` as a new user runs it: a subprocess, the real entry point."""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

from servicekit import ENTRY_POINT, LineReader, clean_env, wait_for

from scale_scheduler.daemon.cli.demo import port_or_any

PROGRESS = re.compile(
    r"queued +(\d+) +running +(\d+) +finished +(\d+) +failed/canceled +(\d+)"
)  # fmt: skip
FAST = ["--port", "0", "--agents", "2", "--tasks", "6", "--duration", "0.6", "--seed", "1"]


def progress(lines: list[str]) -> list[tuple[int, ...]]:
    return [tuple(int(n) for n in m.groups()) for m in map(PROGRESS.search, lines) if m]


def test_demo_runs_tasks_to_finished_and_exits_when_done() -> None:
    done = subprocess.run(
        [str(ENTRY_POINT), "demo", *FAST, "--exit-when-done"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    url = re.search(r"the API is at (http://127\.0\.0\.1:\d+/)", done.stdout)
    assert url, done.stdout
    assert f"  scale-scheduler status --url {url.group(1)}" in lines
    assert f"dashboard: open {url.group(1)} in a browser" in lines
    assert "submitted 6 sample tasks" in lines
    counts = progress(lines)
    assert counts[0][0] > 0, "tasks are seen queued first"
    assert counts[-1] == (0, 0, 6, 0), "and all six finish"
    assert lines[-2:] == ["daemon stopped (exit status 0)", "simulated Mesos master stopped"]
    database = re.search(r"^database: (.+)$", done.stdout, re.MULTILINE)
    assert database
    assert not Path(database.group(1)).parent.exists(), "the temporary state is removed"


def test_demo_runs_until_ctrl_c_and_keeps_state_when_asked(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "demo", *FAST, "--keep-state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    output = LineReader(proc.stdout)
    try:
        wait_for(lambda: any("every task has ended" in line for line in output.snapshot()), 60)
        assert proc.poll() is None, "without --exit-when-done it keeps running"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.join()
        proc.stdout.close()
    assert output.snapshot()[-1] == "simulated Mesos master stopped"
    db = sqlite3.connect(state / "scale-scheduler.db")
    try:
        rows = db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
    finally:
        db.close()
    assert rows == [("FINISHED", 6)]


def test_the_default_port_falls_back_to_any_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_or_any(port) == 0
    assert port_or_any(port) == port
