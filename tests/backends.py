"""Running a test on each durable backend: its ``state`` settings and a raw look at its rows.

``state_settings(kind, request)``: ``{}`` for SQLite (the config's temporary file), or the
settings of the test's own PostgreSQL database (``pg_database``, so the server starts only for
that parameter). ``db_rows(config, sql, *params)``: rows of ``sql`` (``?`` parameters) read
straight from whichever database ``config`` names.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg
import pytest
from pgserver import PgDatabase

from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.postgres.password import read_password_file

BACKENDS = ["sqlite", "postgresql"]


def state_settings(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "sqlite":
        return {}
    database: PgDatabase = request.getfixturevalue("pg_database")
    return {
        "backend": "postgresql",
        "dsn": database.dsn,
        "password_file": str(database.password_file),
    }


async def db_rows(config: Config, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    state = config.state
    if state.backend == "sqlite":
        with sqlite3.connect(state.path) as conn:
            return list(conn.execute(sql, params))
    parts = sql.split("?")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
    password = read_password_file(state.password_file).reveal()
    connection = await asyncpg.connect(state.dsn, password=password)
    try:
        return [tuple(row) for row in await connection.fetch(numbered, *params)]
    finally:
        await connection.close()
