"""A throwaway PostgreSQL cluster from Debian's `postgresql` package, for benchmarks and tests.

`initdb` and `pg_ctl` (the newest `/usr/lib/postgresql/<version>/bin`, or `SCALE_TEST_PG_BINDIR`)
make a cluster in a temporary directory that listens on 127.0.0.1 and a free port, with its
unix socket in that directory too. The superuser `scale` logs in over TCP with a password
(scram-sha-256), kept in `password_file` as `state.password_file` takes it. PostgreSQL refuses to
run as root: then every server command runs as the `postgres` system user
(`runuser -u postgres --`) on a directory that user owns.

The server keeps PostgreSQL's defaults (`fsync` and `synchronous_commit` on), so a commit is as
durable as the daemon's SQLite commits. ``tests/pgserver.py`` wraps it in pytest fixtures; the
benchmarks start one per scenario (``cluster()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import free_port

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

    async def create_database(self, name: str) -> None:
        admin = await self.admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    def state_settings(self, database: str) -> dict[str, Any]:
        """The daemon's ``state`` settings for ``database`` on this server (created here)."""
        asyncio.run(self.create_database(database))
        return {
            "backend": "postgresql",
            "dsn": self.dsn(database),
            "password_file": str(self.password_file),
        }


@contextlib.contextmanager
def cluster() -> Iterator[PostgresServer]:
    """A started server, removed on exit. Raises RuntimeError when none can be started here."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
