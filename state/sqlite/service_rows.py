"""The scheduler row, nodes, framework id and retention in SQLite: statements and reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scale_scheduler.state.changes import (
    FrameworkIdSaved,
    NodeFlagsChanged,
    NodesOffered,
    NodesSighted,
    PauseSet,
    SchedulerRowEnsured,
    TasksPruned,
)
from scale_scheduler.state.scheduler import MISSING_MESSAGE
from scale_scheduler.state.store import Statement

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
    "last_modified, last_offer) VALUES (?, ?, ?, 0, NULL, 1, ?, ?, ?) "
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


def scheduler_ensured(change: SchedulerRowEnsured) -> list[Statement]:
    return [Statement(ENSURE_SCHEDULER_SQL, [(change.now,)])]


def pause_set(change: PauseSet) -> list[Statement]:
    return [
        Statement(
            PAUSE_SQL,
            [(int(change.is_paused), change.now)],
            expect_rows=True,
            missing_message=MISSING_MESSAGE,
        )
    ]


def framework_saved(change: FrameworkIdSaved) -> list[Statement]:
    return [Statement(FRAMEWORK_SQL, [(change.framework_id, change.now)])]


def node_flags_changed(change: NodeFlagsChanged) -> list[Statement]:
    row = (
        None if change.is_paused is None else int(change.is_paused),
        int(change.set_reason),
        change.pause_reason,
        None if change.is_active is None else int(change.is_active),
        change.now,
        change.node_id,
    )
    return [
        Statement(
            NODE_FLAGS_SQL,
            [row],
            expect_rows=True,
            missing_message=f"Node {change.node_id} is missing from the database.",
        )
    ]


def nodes_sighted(change: NodesSighted) -> list[Statement]:
    statements: list[Statement] = []
    if change.new:
        statements.append(
            Statement(
                NODE_INSERT_SQL,
                [(n.node_id, n.hostname, n.agent_id, n.now, n.now, None) for n in change.new],
            )
        )
    if change.moved:
        statements.append(
            Statement(NODE_AGENT_SQL, [(agent, node_id) for node_id, agent in change.moved])
        )
    return statements


def nodes_offered(change: NodesOffered) -> list[Statement]:
    if not change.last_offers:
        return []
    return [Statement(NODE_LAST_OFFER_SQL, [(at, node_id) for node_id, at in change.last_offers])]


DELETE_ATTEMPTS_SQL = "DELETE FROM task_attempts WHERE task_id = ?"


def tasks_pruned(change: TasksPruned) -> list[Statement]:
    """One batch's write: delete the rows, uncount them, move the mark."""
    tasks: Sequence = change.tasks
    if not tasks:
        return []
    by_state = Counter(t.state.value for t in tasks)
    return [
        Statement(DELETE_SQL, [(t.task_id, t.state.value) for t in tasks]),
        Statement(DELETE_ATTEMPTS_SQL, [(t.task_id,) for t in tasks]),
        Statement(UNCOUNT_SQL, [(n, state) for state, n in by_state.items()]),
        Statement(MARK_SQL, [(max(t.task_id for t in tasks), len(tasks))]),
    ]
