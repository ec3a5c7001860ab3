"""The scheduler row, nodes, framework id and retention in SQLite: statements (for the rows
``state.rows`` builds) and reads."""

from __future__ import annotations

ENSURE_SCHEDULER_SQL = (
    "INSERT OR IGNORE INTO scheduler (id, is_paused, last_modified) VALUES (1, 0, ?)"
)
PAUSE_SQL = "UPDATE scheduler SET is_paused = ?, last_modified = ? WHERE id = 1"
LOAD_SCHEDULER_SQL = "SELECT is_paused, last_modified FROM scheduler WHERE id = 1"

FRAMEWORK_SQL = (
    "INSERT INTO framework (id, framework_id, registered) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET framework_id = excluded.framework_id, "
    "registered = excluded.registered"
)
LOAD_FRAMEWORK_SQL = "SELECT framework_id FROM framework WHERE id = 1"

# ``FlagChange.applied_to`` in SQL, computed from the row as committed when the statement runs
# (in SET, column names are the row's values before this UPDATE).
NODE_FLAGS_SQL = (
    "UPDATE nodes SET "
    "pause_reason = CASE WHEN NOT COALESCE(?1, is_paused) THEN NULL "
    "WHEN ?2 THEN ?3 ELSE pause_reason END, "
    "is_paused = COALESCE(?1, is_paused), "
    "is_active = COALESCE(?4, is_active), "
    "last_modified = ?5 "
    "WHERE id = ?6"
)
NODE_INSERT_SQL = (
    "INSERT INTO nodes (id, hostname, agent_id, is_paused, pause_reason, is_active, created, "
    "last_modified, last_offer) VALUES (?, ?, ?, 0, NULL, 1, ?, ?, NULL) "
    "ON CONFLICT (hostname) DO UPDATE SET agent_id = excluded.agent_id"
)
NODE_AGENT_SQL = "UPDATE nodes SET agent_id = ? WHERE id = ?"
NODE_LAST_OFFER_SQL = "UPDATE nodes SET last_offer = ? WHERE id = ?"
LOAD_NODES_SQL = (
    "SELECT id, hostname, agent_id, is_paused, pause_reason, is_active, created, "
    "last_modified, last_offer FROM nodes ORDER BY id"
)

WALK_SQL = (
    "SELECT id, state, created, COALESCE(ended, last_modified) FROM tasks "
    "WHERE id > ? ORDER BY id LIMIT ?"
)
DELETE_SQL = "DELETE FROM tasks WHERE id = ? AND state = ?"
UNCOUNT_SQL = "UPDATE task_counts SET n = n - ? WHERE state = ?"
MARK_SQL = (
    "UPDATE retention SET pruned_through = MAX(pruned_through, ?), "
    "pruned_total = pruned_total + ? WHERE id = 1"
)
LOAD_MARK_SQL = "SELECT pruned_through, pruned_total FROM retention WHERE id = 1"
TERMINAL_TOTAL_SQL = "SELECT COALESCE(SUM(n), 0) FROM task_counts"


DELETE_ATTEMPTS_SQL = "DELETE FROM task_attempts WHERE task_id = ?"
