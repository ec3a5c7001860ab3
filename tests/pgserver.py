"""A real PostgreSQL for tests: a throwaway cluster (``bench/pg_cluster.py``'s
``PostgresServer``, shared with the benchmarks) from Debian's `postgresql` package.

Fixtures: `postgresql` (session: one server for every test, stopped at the end) and
`pg_database` (function: a fresh database, dropped afterwards). Without the binaries the fixtures
skip, except under `CI`, where they fail (`.ci/run` installs the package).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import asyncpg
import pytest

from bench.pg_cluster import PostgresServer, unavailable_reason

__all__ = ["PgDatabase", "PostgresServer", "pg_database", "postgresql", "unavailable_reason"]


@dataclass(frozen=True)
class PgDatabase:
    """One test's own database on the session's server."""

    server: PostgresServer
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    @property
    def password(self) -> str:
        return self.server.password

    @property
    def password_file(self) -> Path:
        return self.server.password_file

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, password=self.password)


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the whole session."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.init()
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.remove()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL did not start: {exc}")
        pytest.skip(f"PostgreSQL did not start: {exc}")
    try:
        yield server
    finally:
        server.remove()


_database_numbers = count(1)


@pytest.fixture
async def pg_database(postgresql: PostgresServer) -> AsyncIterator[PgDatabase]:
    """A new, empty database for one test, dropped (its sessions ended) afterwards."""
    if not postgresql.running():  # a test that stopped the server leaves it stopped
        postgresql.start()
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    admin = await postgresql.admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield PgDatabase(postgresql, name)
    if not postgresql.running():
        postgresql.start()
    admin = await postgresql.admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
