"""The simulator's modules import each other without a circle.

Every import counts, those under ``if TYPE_CHECKING:`` too: a circle hidden from the runtime is
still two modules that each need the other to be understood. Where one module needs a few things
of another that sits above it, it names them in a ``typing.Protocol`` of its own (for example
``master.MasterHost``, ``agents.AgentsMaster``, ``election.Contender``, ``faults.FaultTarget``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "scale_scheduler.simulator"


def module_imports(folder: Path, package: str) -> dict[str, set[str]]:
    """Each module of ``folder`` (but ``__init__``) and the sibling modules it imports."""
    modules = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in sorted(modules):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == package:  # from package import sibling
                    found.update(alias.name for alias in node.names if alias.name in modules)
                elif node.module.startswith(package + "."):
                    found.add(node.module[len(package) + 1 :].split(".")[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(package + "."):
                        found.add(alias.name[len(package) + 1 :].split(".")[0])
        graph[name] = found & modules - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_simulator_has_no_import_circle() -> None:
    graph = module_imports(ROOT / "simulator", PACKAGE)
    assert {"master", "cluster", "agents", "faults", "election"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_find_cycle_finds_circles(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected


def test_type_checking_imports_count(tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "one.py").write_text("from x.pkg.two import B\n")
    (folder / "two.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from x.pkg import one\n"
    )
    graph = module_imports(folder, "x.pkg")
    assert graph == {"one": {"two"}, "two": {"one"}}
    assert find_cycle(graph) == ["one", "two", "one"]
