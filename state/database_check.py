"""Whether ``Store.open`` could use a database file, found without changing anything.

``check-config`` and the daemon's start-up checks ask this before anything is created or
migrated. The file must be an SQLite database whose schema version this program knows, readable
and writable, in a writable directory (SQLite keeps its WAL and shared-memory files beside it);
or absent, with a place where the store can create it. Blocking: for the CLI or a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from scale_scheduler.state.migrations import unknown_version_problem
from scale_scheduler.state.store import NOT_A_FILE, StoreError


def check_database_file(path: str | Path) -> None:
    """Raise ``StoreError`` naming ``path`` and what stops the store from opening it."""
    path = Path(path)
    problem = _problem(path)
    if problem:
        raise StoreError(f"{path}: {problem}")


def _problem(path: Path) -> str:
    if path.is_dir():
        return NOT_A_FILE
    if not path.exists():
        return _creation_problem(path)
    if not os.access(path, os.R_OK | os.W_OK):
        return "not readable and writable by this user"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its directory {path.parent} is not writable (SQLite keeps its journal there)"
    try:
        version, tables = _schema_version(path)
    except sqlite3.Error as exc:
        return str(exc)
    return unknown_version_problem(version, tables=tables)


def _creation_problem(path: Path) -> str:
    """What stops the store from creating ``path`` and its missing directories."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create it: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create it: {ancestor} is not writable by this user"
    return ""


def _schema_version(path: Path) -> tuple[int, int]:
    """``PRAGMA user_version`` and the number of tables, read without creating the file, a
    journal or a WAL."""
    uri = path.resolve().as_uri()
    # Without a WAL beside it nothing is mid-commit: read it as immutable, which creates no
    # -wal/-shm files. With one, read through it as SQLite does (read only).
    has_wal = path.with_name(path.name + "-wal").exists()
    uri += "?mode=ro" if has_wal else "?immutable=1"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        row = db.execute("PRAGMA user_version").fetchone()
    return (int(row[0]) if row else 0), (int(tables[0]) if tables else 0)
