"""A throwaway PostgreSQL cluster from Debian's `postgresql` package, for the tests (via
``tests/pgserver.py``'s fixtures) and the benchmarks (B5).

`initdb` and `pg_ctl` (the newest `/usr/lib/postgresql/<version>/bin`, or `SCALE_TEST_PG_BINDIR`)
make a cluster in a temporary directory that listens on 127.0.0.1 and a free port, with its
unix socket in that directory too. The superuser `scale` logs in over TCP with a password
(scram-sha-256), so every user exercises `state.password_file` as a deployment would.
PostgreSQL refuses to run as root, and CI runs as root: then every server command runs as the
`postgres` system user (`runuser -u postgres --`) on a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import asyncpg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SUPERUSER = "scale"
SERVER_USER = "postgres"
START_TIMEOUT = 60


def _bindir() -> Path | None:
    configured = os.environ.get("SCALE_TEST_PG_BINDIR")
    if configured:
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def unavailable_reason() -> str | None:
    """Why a private PostgreSQL cannot be started here, or None when it can."""
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists() or not (bindir / "pg_ctl").exists():
        return "PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no {SERVER_USER!r} user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root, and runuser (util-linux) is missing"
    return None


class PostgresServer:
    """One PostgreSQL cluster in its own temporary directory."""

    def __init__(self) -> None:
        bindir = _bindir()
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.password = secrets.token_urlsafe(24)
        self.workdir = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.datadir = self.workdir / "data"
        self.logfile = self.workdir / "server.log"
        self.password_file = self.workdir / "password"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=START_TIMEOUT + 30,
            check=False,
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            tail = ""
            if self.logfile.exists():
                tail = self.logfile.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"PostgreSQL {what} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def init(self) -> None:
        if self._as_root:
            shutil.chown(self.workdir, SERVER_USER, SERVER_USER)
        pwfile = self.workdir / "initdb-password"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(pwfile, SERVER_USER, SERVER_USER)
        self._check(
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ),
            "initdb",
        )
        pwfile.unlink()
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.workdir}'\n"
                "max_connections = 100\n"
            )
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)

    def start(self) -> None:
        self._check(
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
            ),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, end sessions)."""
        self._check(
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"
            ),
            "stop",
        )

    def running(self) -> bool:
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status")
        return result.returncode == 0

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            if self.datadir.exists() and self.running():
                self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        """A DSN without the password (it is in ``password_file``)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn(), password=self.password)
