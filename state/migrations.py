"""Versioned schema migrations, applied in order at start-up.

Each migration is ``(version, description, sql)``; the applied version is SQLite's
``PRAGMA user_version``. Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    description: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "scheduler row and framework id",
        """
        CREATE TABLE scheduler (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            is_paused INTEGER NOT NULL DEFAULT 0 CHECK (is_paused IN (0, 1)),
            last_modified REAL NOT NULL
        );
        CREATE TABLE framework (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            framework_id TEXT NOT NULL,
            registered REAL NOT NULL
        );
        """,
    ),
]
