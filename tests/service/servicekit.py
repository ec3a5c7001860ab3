"""Process-level helpers for the service tests: the real ``scale-scheduler`` entry point run as
subprocesses (simulator and daemon), a ``NOTIFY_SOCKET`` listener, and a small HTTP client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ENTRY_POINT = Path(sys.executable).parent / "scale-scheduler"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without settings that would change the daemon under test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCALE_SCHEDULER_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    env.update(extra)
    return env


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)  # poll interval of this wait on a condition (no loop here)


class LineReader:
    """Collects a pipe's lines on a thread, so tests can wait for one without blocking."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe: Any) -> None:
        for line in pipe:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


class SimProcess:
    """``scale-scheduler sim`` on a free port, with fast heartbeats and allocation."""

    def __init__(self, agents: int = 3) -> None:
        self.proc = subprocess.Popen(
            [
                str(ENTRY_POINT),
                "sim",
                "--port",
                "0",
                "--agents",
                str(agents),
                "--heartbeat-interval",
                "0.3",
                "--allocation-interval",
                "0.1",
                "--task-duration",
                "0.3",
                "--task-start-delay",
                "0.02",
                "--status-update-retry",
                "0.5",
                "--seed",
                "3",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=clean_env(),
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        self.url: str = json.loads(first)["leader"].rstrip("/")

    def operator(self, call_type: str) -> dict[str, Any]:
        _, body = http("POST", self.url + "/api/v1", {"type": call_type})
        result: dict[str, Any] = body[call_type.lower()]
        return result

    def record(self) -> dict[str, Any]:
        _, body = http("GET", self.url + "/sim/record")
        return dict(body)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def daemon_config(
    tmp: Path, master: str, *, port: int = 0, level: str = "info", fmt: str = "auto"
) -> dict[str, Any]:
    return {
        "mesos": {
            "master": master,
            "user": "svc",
            "hostname": "sched.test",
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "request_timeout": 5.0,
        },
        "api": {"host": "127.0.0.1", "port": port},
        "state": {"path": str(tmp / "state.db")},
        "logging": {"level": level, "format": fmt},
        "scheduler": {
            "refuse_seconds": 0.2,
            "idle_refuse_seconds": 0.5,
            "revive_interval": 0.1,
            "reconcile_retry": 0.2,
            "agents_refresh_interval": 0.3,
        },
    }


class DaemonProcess:
    """``scale-scheduler run --config`` as systemd would start it (stdout is a pipe)."""

    def __init__(self, config_path: Path, env: dict[str, str]) -> None:
        self.config_path = config_path
        self.proc = subprocess.Popen(
            [str(ENTRY_POINT), "run", "--config", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.output = LineReader(self.proc.stdout)

    @classmethod
    def start(
        cls, tmp: Path, config: dict[str, Any], notify_socket: str | None = None, **env: str
    ) -> DaemonProcess:
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        if notify_socket is not None:
            env["NOTIFY_SOCKET"] = notify_socket
        return cls(path, clean_env(**env))

    def events(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed as JSON (fails on a line that is not)."""
        return [json.loads(line) for line in self.output.snapshot() if line.strip()]

    def wait_for_event(self, name: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for event in self.events():
                if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                    return event
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode} before {name}")
            return None

        try:
            result: dict[str, Any] = wait_for(find, timeout)
        except TimeoutError:
            tail = "\n".join(self.output.snapshot()[-20:])
            raise AssertionError(f"no {name} {fields} in the daemon's output:\n{tail}") from None
        return result

    def api_url(self) -> str:
        return str(self.wait_for_event("daemon_started")["api"])

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self.output.join()
        return code

    def kill(self) -> None:
        """Make sure the process is gone and its pipe closed (also after a clean exit)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.output.join()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class NotifyListener:
    """A datagram socket standing in for systemd's ``NOTIFY_SOCKET`` (path or abstract)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(fields)
        return fields

    def wait_for(self, key: str, value: str | None = None, timeout: float = 15.0) -> dict[str, str]:
        """The next message carrying ``key`` (with ``value`` in it, when given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if message is not None and key in message and (value is None or value in message[key]):
                return message
        raise TimeoutError(f"no {key} message with {value!r}; got {self.messages}")

    def drain(self, timeout: float = 0.2) -> None:
        while self.receive(timeout) is not None:
            pass

    def close(self) -> None:
        self.sock.close()
