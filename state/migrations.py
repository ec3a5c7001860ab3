"""Versioned schema migrations, applied in order at start-up.

Each migration is ``(version, description, sql)``; the applied version is SQLite's
``PRAGMA user_version``. Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    Migration(
        2,
        "tasks and nodes",
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            priority INTEGER NOT NULL,
            cpus REAL NOT NULL,
            mem REAL NOT NULL,
            disk REAL NOT NULL,
            gpus INTEGER NOT NULL,
            ports INTEGER NOT NULL,
            constraints TEXT,
            spec BLOB NOT NULL,
            max_attempts INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            lost_launches INTEGER NOT NULL DEFAULT 0,
            kill_requested INTEGER NOT NULL DEFAULT 0,
            agent_id TEXT,
            hostname TEXT,
            assigned_ports TEXT,
            created REAL NOT NULL,
            queued REAL NOT NULL,
            launched REAL,
            started REAL,
            ended REAL,
            last_modified REAL NOT NULL,
            status_state TEXT,
            status_message TEXT,
            status_reason TEXT,
            status_source TEXT,
            status_time REAL
        );
        CREATE INDEX tasks_state_id ON tasks (state, id);
        CREATE TABLE nodes (
            id INTEGER PRIMARY KEY,
            hostname TEXT NOT NULL UNIQUE,
            agent_id TEXT,
            is_paused INTEGER NOT NULL DEFAULT 0 CHECK (is_paused IN (0, 1)),
            pause_reason TEXT,
            is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
            created REAL NOT NULL,
            last_modified REAL NOT NULL,
            last_offer REAL
        );
        """,
    ),
    Migration(
        3,
        "counts of ended tasks by state, retention bookkeeping",
        # task_counts: terminal tasks by state, kept by the writers in the same transaction as
        # each change (the tracker's status bursts and cancels add, the pruner subtracts), so
        # counting history never scans it. Not triggers: a row trigger halves the rate of the
        # status updates' UPDATEs. Live states are counted through the (state, id) index: their
        # rows are bounded by live work.
        # retention: the largest id pruned (ids below it that are missing were pruned; ids are
        # never reused) and how many tasks were pruned in all.
        """
        CREATE TABLE task_counts (
            state TEXT PRIMARY KEY,
            n INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO task_counts (state, n) VALUES
            ('FINISHED', 0), ('FAILED', 0), ('KILLED', 0), ('LOST', 0), ('ERROR', 0),
            ('DROPPED', 0), ('GONE', 0), ('CANCELED', 0);
        UPDATE task_counts SET n = (SELECT COUNT(*) FROM tasks WHERE state = task_counts.state);
        CREATE TABLE retention (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pruned_through INTEGER NOT NULL DEFAULT 0,
            pruned_total INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO retention (id) VALUES (1);
        """,
    ),
    Migration(
        4,
        "failure classes and retry back-off: cluster failures, next attempt, attempt history",
        # lost_launches becomes cluster_failures: the free relaunches of lost launches are now
        # the failures that are the cluster's (``failure_classes``), counted apart from the
        # task's own. next_attempt_at: when a task waiting out its retry back-off may launch.
        # task_attempts: the attempts that ended and were retried (the current or last attempt
        # is the task row's); at most ``ATTEMPT_HISTORY`` per task.
        """
        ALTER TABLE tasks RENAME COLUMN lost_launches TO cluster_failures;
        ALTER TABLE tasks ADD COLUMN next_attempt_at REAL;
        CREATE TABLE task_attempts (
            task_id INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            agent_id TEXT,
            hostname TEXT,
            launched REAL,
            ended REAL NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            failure_class TEXT,
            PRIMARY KEY (task_id, attempt)
        ) WITHOUT ROWID;
        """,
    ),
    Migration(
        5,
        "task groups for scoped placement constraints",
        # constraints now holds Marathon's list form ([["rack", "IS", "r1"], ...]); rows of the
        # {"rack": "r1"} shorthand stay as they are and still load (state/sqlite/task_rows.py).
        """
        ALTER TABLE tasks ADD COLUMN task_group TEXT;
        """,
    ),
]


def unknown_version_problem(
    current: int, migrations: Sequence[Migration] = MIGRATIONS, tables: int = 0
) -> str:
    """Why a database at schema version ``current`` holding ``tables`` tables cannot be used,
    or ``""`` when it can."""
    if current == 0 and tables:
        return (
            f"it holds {tables} table(s) but no scale-scheduler schema version: another "
            "program's database? Point state.path at a new file, or restore this one's backup"
        )
    known = max((m.version for m in migrations), default=0)
    if current <= known:
        return ""
    return (
        f"the database schema is version {current}, newer than this program knows ({known}); "
        "run the newer release or restore a backup"
    )
