"""The import rules of the seams between the API, the scheduling core and the state.

- ``state/domain.py`` (task states, resource shapes) imports nothing of the project but the
  placement constraints' model (``state/placement_constraints.py``), which imports nothing of
  the project: both the pure scheduling code and the storage modules stand on them.
- ``daemon/matcher.py`` is pure: of the project it imports the domain types, the placement
  constraints' model and the Mesos wire types it decides on (``daemon/mesos_types.py``: offers
  and resources as plain msgspec structs, themselves importing nothing of the project); no
  storage module of ``state/``, and nothing of the Mesos connection (drivers, HTTP calls,
  subscription, RecordIO ...).
- ``api/`` reaches the scheduling core and its state only through the core facade
  (``daemon/core_facade.py``), the domain types and the placement constraints' model (to parse
  a task's constraints). Besides its own modules it may import the service shell's plain
  helpers, none of which schedules or stores anything: the configuration,
  the authority parser, the burst log, the loop share, the pruner (retention's answers and
  figures) and the validation-failure wording. ``api/app.py`` is the composition root: it builds
  the store, the driver and the core and attaches them to the facade, so it is exempt.

Every import statement counts, those under ``if TYPE_CHECKING:`` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "scale_scheduler"

DOMAIN = f"{PACKAGE}.state.domain"
MESOS_TYPES = f"{PACKAGE}.daemon.mesos_types"
FACADE = f"{PACKAGE}.daemon.core_facade"
CONSTRAINTS = f"{PACKAGE}.state.placement_constraints"
MATCHER_MAY_IMPORT = frozenset({DOMAIN, MESOS_TYPES, CONSTRAINTS})
API_MAY_IMPORT = frozenset(
    {
        FACADE,
        DOMAIN,
        CONSTRAINTS,
        f"{PACKAGE}.daemon.config",
        f"{PACKAGE}.daemon.authority",
        f"{PACKAGE}.daemon.burst_log",
        f"{PACKAGE}.daemon.loop_share",
        f"{PACKAGE}.daemon.pruner",
        f"{PACKAGE}.daemon.validation_failure",
    }
)
COMPOSITION_ROOT = "api/app.py"


def project_imports(relative: str) -> set[str]:
    """The modules of the project that the file imports (``from a import b`` counts ``a``, or
    ``a.b`` when ``b`` is a module of the project)."""
    tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if _is_module(submodule) else node.module)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")[1:]
    base = ROOT.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_the_domain_module_imports_nothing_of_the_project_but_the_constraints_model() -> None:
    assert project_imports("state/domain.py") == {CONSTRAINTS}
    assert project_imports("state/placement_constraints.py") == set()


def test_the_matcher_imports_only_domain_and_mesos_wire_types() -> None:
    imported = project_imports("daemon/matcher.py")
    assert imported <= MATCHER_MAY_IMPORT, sorted(imported - MATCHER_MAY_IMPORT)
    assert project_imports("daemon/mesos_types.py") == set()


def test_the_api_reaches_the_core_only_through_the_facade() -> None:
    offenders: dict[str, list[str]] = {}
    modules = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "api").glob("*.py"))
    assert "api/views_status.py" in modules
    for relative in modules:
        if relative == COMPOSITION_ROOT:
            continue
        outside = sorted(
            name
            for name in project_imports(relative)
            if not name.startswith(f"{PACKAGE}.api") and name not in API_MAY_IMPORT
        )
        if outside:
            offenders[relative] = outside
    assert offenders == {}


def test_the_rule_sees_what_it_forbids() -> None:
    """The checker itself: a module import and a ``from package import module`` both count."""
    imported = project_imports("api/routes.py")
    assert f"{PACKAGE}.api.views_status" in imported
    assert f"{PACKAGE}.daemon.scheduler_core" in project_imports(COMPOSITION_ROOT)
