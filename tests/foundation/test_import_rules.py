"""The import rules of the seams between the API, the scheduling core and the state.

- ``state/domain.py`` (task states, resource shapes) imports nothing of the project but the
  placement constraints' model (``state/placement_constraints.py``), which imports nothing of
  the project: both the pure scheduling code and the storage modules stand on them.
- The matcher (``daemon/scheduling/matcher.py`` and the modules it is made of: its vocabulary,
  the offers' bins, the placement pass, the scoped search, the waiting verdicts) is pure: of the
  project each of them imports the domain types, the placement constraints' model, the Mesos
  wire types it decides on (``daemon/mesos/mesos_types.py``: offers and resources as plain
  msgspec structs, themselves importing nothing of the project) and the matcher's own modules; no
  storage module of ``state/``, and nothing of the Mesos connection (drivers, HTTP calls,
  subscription, RecordIO ...).
- ``api/`` reaches the scheduling core and its state only through the core facade
  (``daemon/scheduling/core_facade.py``), the domain types and the placement constraints' model
  (to parse a task's constraints). Besides its own modules it may import the service shell's
  plain helpers, none of which schedules or stores anything: the configuration, the authority
  parser, the burst log, the loop share, the pruner (retention's answers and
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
MESOS_TYPES = f"{PACKAGE}.daemon.mesos.mesos_types"
FACADE = f"{PACKAGE}.daemon.scheduling.core_facade"
CONSTRAINTS = f"{PACKAGE}.state.placement_constraints"
MATCHER_MODULES = (
    "matcher",
    "match_model",
    "offer_bins",
    "placement_pass",
    "scoped_search",
    "wait_verdicts",
)
MATCHER_MAY_IMPORT = frozenset(
    {DOMAIN, MESOS_TYPES, CONSTRAINTS}
    | {f"{PACKAGE}.daemon.scheduling.{module}" for module in MATCHER_MODULES}
)
API_MAY_IMPORT = frozenset(
    {
        FACADE,
        DOMAIN,
        CONSTRAINTS,
        f"{PACKAGE}.daemon.service.config",
        f"{PACKAGE}.daemon.service.authority",
        f"{PACKAGE}.daemon.service.burst_log",
        f"{PACKAGE}.daemon.mesos.loop_share",
        f"{PACKAGE}.daemon.service.pruner",
        f"{PACKAGE}.daemon.service.validation_failure",
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
    offenders: dict[str, list[str]] = {}
    for module in MATCHER_MODULES:
        imported = project_imports(f"daemon/scheduling/{module}.py")
        if not imported <= MATCHER_MAY_IMPORT:
            offenders[module] = sorted(imported - MATCHER_MAY_IMPORT)
    assert offenders == {}
    assert project_imports("daemon/mesos/mesos_types.py") == set()


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
    assert f"{PACKAGE}.daemon.scheduling.scheduler_core" in project_imports(COMPOSITION_ROOT)


# --- the daemon's sub-packages ------------------------------------------------------------------

DAEMON = f"{PACKAGE}.daemon"
SUBPACKAGES = ("mesos", "scheduling", "service", "cli")
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    # The Mesos connection: itself, the settings it connects with, the domain and node model.
    "mesos": (
        f"{DAEMON}.mesos",
        f"{DAEMON}.service.config",
        f"{DAEMON}.service.exit_codes",
        f"{PACKAGE}.state.domain",
        f"{PACKAGE}.state.nodes",
    ),
    # Scheduling: itself, the Mesos seam and wire types (not the transport), the settings and the
    # leadership it reports, the state interface and model (never a backend).
    "scheduling": (
        f"{DAEMON}.scheduling",
        f"{DAEMON}.mesos.driver",
        f"{DAEMON}.mesos.mesos_types",
        f"{DAEMON}.mesos.mesos_task_states",
        f"{DAEMON}.mesos.failure_classes",
        f"{DAEMON}.mesos.agent_usage_api",
        f"{DAEMON}.mesos.usage_math",
        f"{DAEMON}.service.config",
        f"{DAEMON}.service.exit_codes",
        f"{DAEMON}.service.leadership",
        f"{DAEMON}.service.leadership_terms",
        f"{PACKAGE}.state.domain",
        f"{PACKAGE}.state.placement_constraints",
        f"{PACKAGE}.state.placement_counts",
        f"{PACKAGE}.state.changes",
        f"{PACKAGE}.state.interface",
        f"{PACKAGE}.state.nodes",
        f"{PACKAGE}.state.scheduler",
        f"{PACKAGE}.state.tasks",
    ),
    # The service shell wires everything but the CLI.
    "service": (
        f"{DAEMON}.mesos",
        f"{DAEMON}.scheduling",
        f"{DAEMON}.service",
        f"{PACKAGE}.api",
        f"{PACKAGE}.state",
    ),
    # The CLI is the outermost layer.
    "cli": (PACKAGE,),
}


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _daemon_modules(subpackage: str) -> list[str]:
    folder = ROOT / "daemon" / subpackage
    return sorted(path.relative_to(ROOT).as_posix() for path in folder.glob("*.py"))


def test_the_daemon_is_grouped_into_documented_subpackages() -> None:
    top = sorted(path.name for path in (ROOT / "daemon").glob("*.py"))
    assert top == ["__init__.py"], "daemon/ holds sub-packages only"
    found = sorted(p.name for p in (ROOT / "daemon").iterdir() if (p / "__init__.py").is_file())
    assert found == sorted(SUBPACKAGES)
    for subpackage in SUBPACKAGES:
        tree = ast.parse((ROOT / "daemon" / subpackage / "__init__.py").read_text("utf-8"))
        doc = ast.get_docstring(tree) or ""
        assert "Owns" in doc, f"daemon/{subpackage}: say what it owns"
        assert "May import" in doc, f"daemon/{subpackage}: say what it may import"


def test_each_subpackage_imports_only_what_its_docstring_allows() -> None:
    offenders: dict[str, list[str]] = {}
    for subpackage, allowed in MAY_IMPORT.items():
        for relative in _daemon_modules(subpackage):
            outside = sorted(
                name
                for name in project_imports(relative)
                if name != DAEMON and not _allowed(name, allowed)
            )
            if outside:
                offenders[relative] = outside
    assert offenders == {}


def test_nothing_but_the_cli_imports_the_cli_and_state_imports_no_daemon() -> None:
    offenders: dict[str, list[str]] = {}
    sources = [*ROOT.glob("daemon/**/*.py"), *ROOT.glob("api/**/*.py"), *ROOT.glob("state/**/*.py")]
    for path in sorted(sources):
        relative = path.relative_to(ROOT).as_posix()
        imported = project_imports(relative)
        bad = (
            []
            if relative.startswith("daemon/cli/")
            else [name for name in imported if _allowed(name, (f"{DAEMON}.cli",))]
        )
        if relative.startswith("state/"):
            bad += [n for n in imported if _allowed(n, (DAEMON, f"{PACKAGE}.api"))]
        if bad:
            offenders[relative] = sorted(bad)
    assert offenders == {}
