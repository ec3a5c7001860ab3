"""A real ZooKeeper for tests: `SCALE_TEST_ZK=host:port` if set, else a private server.

The private server runs Debian's `zookeeper` package (`java -cp "/usr/share/java/*"
org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg`) on 127.0.0.1 and a free port, with a
temporary data directory and the admin server off, and is stopped at the end of the session.
Without java or the jars the `zookeeper` fixture skips, except under `CI`, where it fails.

Use it from a conftest: `from zookeeper import zookeeper` (the fixture yields "127.0.0.1:PORT").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_CLASSPATH = "/usr/share/java/*"
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
START_TIMEOUT = 60.0


def _classpath() -> str:
    return os.environ.get("SCALE_TEST_ZK_CLASSPATH", DEFAULT_CLASSPATH)


def unavailable_reason() -> str | None:
    """Why a private ZooKeeper cannot be started here, or None when it can."""
    if shutil.which("java") is None:
        return "java is not installed (apt-get install default-jre-headless zookeeper)"
    jar_dir = Path(_classpath().rstrip("*").rstrip("/") or ".")
    if not any(jar_dir.glob("zookeeper*.jar")):
        return f"no zookeeper jar in {jar_dir} (apt-get install zookeeper)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a ZooKeeper server answers the `srvr` four-letter command."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"srvr")
            data = sock.recv(1024)
    except OSError:
        return False
    return data.startswith(b"Zookeeper version")


class ZooKeeperServer:
    """One standalone ZooKeeper process with its own temporary data directory."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="sim-zk-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        data = self.workdir / "data"
        data.mkdir()
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                [
                    "tickTime=500",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={data}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=srvr,ruok",
                    "maxClientCnxns=200",
                    "",
                ]
            )
        )
        log = (self.workdir / "zookeeper.log").open("wb")
        self.process = subprocess.Popen(
            [
                "java",
                "-Xmx256m",
                f"-Dzookeeper.log.dir={self.workdir}",
                "-cp",
                _classpath(),
                MAIN_CLASS,
                str(cfg),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.workdir / "zookeeper.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"ZooKeeper exited during start-up:\n{tail}")
            if answers("127.0.0.1", self.port):
                return self.address
            time.sleep(0.2)  # poll interval of the wait for the port (a plain thread: no loop)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not answer on {self.address} in {START_TIMEOUT}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def zookeeper() -> Iterator[str]:
    """`host:port` of a running ZooKeeper for the whole session."""
    external = os.environ.get("SCALE_TEST_ZK")
    if external:
        yield external
        return
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"ZooKeeper is required in CI: {reason}")
        pytest.skip(reason)
    server = ZooKeeperServer()
    try:
        address = server.start()
    except RuntimeError as exc:
        server.stop()
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield address
    finally:
        server.stop()
