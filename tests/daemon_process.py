"""Start the real ``scale-scheduler`` entry point as a subprocess, for process-level tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SCRIPT = Path(sys.executable).with_name("scale-scheduler")


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    raw: dict[str, dict[str, Any]] = {"logging": {"format": "json", "level": "info"}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw))
    return path


class DaemonProcess:
    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, open_file_limit: int | None = None) -> None:
        """Start the daemon (with its soft ``RLIMIT_NOFILE`` set to ``open_file_limit``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
        command = [str(SCRIPT), "run", "--config", str(self.config_path)]
        if open_file_limit is not None:  # set in a shim that then becomes the daemon
            shim = (
                "import os, resource, sys; "
                "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({open_file_limit}, hard)); "
                "os.execv(sys.argv[1], sys.argv[1:])"
            )
            command = [sys.executable, "-c", shim, *command]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    async def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited {self.proc.returncode}: {self.logs()}")
                try:
                    async with session.get(self.url + "/status/") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)  # poll interval of the wait for /status/
        raise AssertionError(f"daemon not ready after {timeout}s: {self.logs()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def logs(self) -> str:
        """The tail of the daemon's output (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def all_logs(self) -> str:
        """Everything the daemon wrote (for checks of what it logged)."""
        return self.log_path.read_text(errors="replace")
