"""Child processes of a benchmark: the daemon under test, fake masters, simulators, load generators.

``Child`` starts a command, reads the one JSON line such helpers print on start, and stops the
process (SIGTERM, then SIGKILL) when the scenario ends. ``Daemon`` is ``scale-scheduler run``
with a written config: it waits until the API answers (and the scheduler is subscribed), reads
the process's resident memory from ``/proc``, and keeps its JSON log in a file.

Everything here runs in the bench's own process and blocks only that process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def python_for(version: str = "") -> str:
    """The interpreter of the project's virtualenv (``.venv310`` for ``"310"``)."""
    if version == "310":
        path = ROOT / ".venv310" / "bin" / "python"
        return str(path) if path.exists() else ""
    return sys.executable


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Child:
    """A helper process that prints one JSON line when it is ready."""

    def __init__(self, argv: list[str], log_path: Path, *, ready_line: bool = True) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if ready_line else self._log,
            stderr=self._log,
            env=clean_env(),
            cwd=ROOT,
        )
        self.info: dict[str, Any] = {}
        if ready_line:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError(f"{argv[:4]} exited before it was ready: {self.tail()}")
            self.info = json.loads(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_json(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the child prints (load generators print their result)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        self.proc.wait(max(0.0, deadline - time.monotonic()))
        out = self.proc.stdout.read()
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"{self.argv[:4]} printed no result: {self.tail()}")
        return json.loads(lines[-1])

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def tail(self, size: int = 3000) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def start_simulator(work: Path, *, seed: int, **options: object) -> Child:
    """``scale-scheduler sim`` on a free port, quiet, with steady 5 s heartbeats; ``options``
    are its flags (``task_duration=0.2`` is ``--task-duration 0.2``; ``log_level="debug"``
    makes it talk)."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    return Child(
        [
            python_for(),
            "-m",
            "scale_scheduler.simulator",
            "--port=0",
            "--log-level=warning",
            *flags,
            "--heartbeat-interval=5",
            f"--seed={seed}",
        ],
        work / "simulator.log",
    )


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (and the threads it starts later) runs on ``cpus`` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            continue


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its threads' children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory (VmRSS, VmHWM) of ``pid`` in MB (10**6 bytes)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def write_daemon_config(
    path: Path,
    *,
    master: str,
    db: Path,
    port: int,
    driver: str = "native",
    level: str = "info",
    fmt: str = "json",
    scheduler: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The daemon's config at ``path``; ``scheduler`` and ``state`` add to those sections,
    ``usage`` replaces the default one."""
    raw: dict[str, Any] = {
        "mesos": {
            "master": master,
            "driver": driver,
            "hostname": "bench-scheduler",
            "user": "bench",
            "backoff_initial": 0.1,
            "backoff_max": 1.0,
        },
        "api": {"host": "127.0.0.1", "port": port},
        "state": {"path": str(db), **(state or {})},
        "logging": {"level": level, "format": fmt},
        "scheduler": scheduler or {},
    }
    if usage is not None:
        raw["usage"] = usage
    path.write_text(yaml.safe_dump(raw))
    return raw


class Daemon:
    """``scale-scheduler run --config PATH`` as a child process, stdout (JSON log) to a file."""

    def __init__(
        self,
        config_path: Path,
        port: int,
        log_path: Path,
        *,
        python: str = "",
        profile_to: Path | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        argv = [python or sys.executable]
        if profile_to is not None:
            argv += ["-m", "cProfile", "-o", str(profile_to)]
        argv += ["-m", "scale_scheduler.daemon.cli.main", "run", "--config", str(config_path)]
        self.argv = argv
        self.started = time.monotonic()
        self.child = Child(argv, log_path, ready_line=False)

    @property
    def pid(self) -> int:
        return self.child.pid

    def status(self) -> dict[str, Any] | None:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/status/", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def wait(self, *, subscribed: bool = True, timeout: float = 120.0) -> float:
        """Seconds from start until the API answers (and the scheduler is subscribed)."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.child.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.child.proc.returncode}: {self.tail()}")
            status = self.status()
            if status is not None and (not subscribed or status["scheduler"]["is_online"]):
                return time.monotonic() - self.started
            time.sleep(0.02)
        raise RuntimeError(f"daemon not ready after {timeout}s: {self.tail()}")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def pause(self, paused: bool) -> None:
        self.request("PATCH", "/scheduler/", {"is_paused": paused})

    def stop(self) -> int | None:
        return self.child.stop(timeout=60)

    def tail(self, size: int = 3000) -> str:
        return self.child.tail(size)
