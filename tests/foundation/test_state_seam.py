"""The state seam: above ``state/``, code depends on the state interface and the domain types,
never on a backend (its store, SQL or driver). Checked on the source, so a new import of the
SQLite backend from the scheduling core fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKEND_MODULES = (
    "scale_scheduler.state.store",
    "scale_scheduler.state.sqlite",
    "scale_scheduler.state.memory",
    "scale_scheduler.state.migrations",
    "sqlite3",
    "aiosqlite",
)
ALLOWED = {
    # The service shell: it opens the database and checks its file before start-up.
    "daemon/service/preflight.py",
    "api/app.py",
}
SQL = re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|PRAGMA)\b|\bUPDATE \w+ SET\b")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules() -> list[Path]:
    return sorted([*ROOT.glob("daemon/**/*.py"), *ROOT.glob("api/**/*.py")])


def test_nothing_above_state_imports_a_backend() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imports(path) if name.startswith(BACKEND_MODULES)
        )
        for path in _modules()
        if str(path.relative_to(ROOT)) not in ALLOWED
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_scheduling_core_holds_no_sql() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.glob("daemon/**/*.py")
        if str(path.relative_to(ROOT)) not in ALLOWED and SQL.search(path.read_text())
    ]
    assert offenders == []
