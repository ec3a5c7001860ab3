"""Rules the test suite keeps about itself: no fixed sleep waits for something to happen, and no
test patches a private attribute or overrides a library's private hook.

A sleep that must stay says why on its line, in one of a few words: the poll interval of a wait
on a condition, a window in which nothing may happen, a sleep that is not a wait (it blocks the
loop on purpose), a deliberately slow or paced peer, or time that must pass (an idle timeout).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

JUSTIFICATIONS = (
    "poll interval",
    "nothing may",
    "not a wait",
    "deliberately slow",
    "paced",
    "time must pass",
)

# Patches of private attributes that remain, each with the seam it is waiting for.
KNOWN_PRIVATE_PATCHES: set[tuple[str, str]] = set()


def _sources() -> Iterator[tuple[str, ast.Module, list[str]]]:
    for path in sorted(TESTS.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        yield path.relative_to(TESTS).as_posix(), ast.parse(text), text.splitlines()


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def _fixed_sleeps() -> Iterator[tuple[str, int, str]]:
    for name, tree, lines in _sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if _dotted(node.func) not in ("asyncio.sleep", "time.sleep"):
                continue
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and arg.value == 0:
                continue  # one turn of the loop, not a wait
            yield name, node.lineno, lines[node.lineno - 1]


def _private_patches() -> Iterator[tuple[str, int, str]]:
    for name, tree, _lines in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name == "_make_runner":
                    yield name, node.lineno, "overrides aiohttp's private _make_runner"
            elif isinstance(node, ast.Call) and _dotted(node.func).endswith("monkeypatch.setattr"):
                target = node.args[0] if node.args else None
                attr = node.args[1] if len(node.args) > 1 else None
                if isinstance(target, ast.Constant) and isinstance(target.value, str):
                    dotted = target.value
                elif target is not None:
                    dotted = _dotted(target)
                    if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                        dotted = f"{dotted}.{attr.value}"
                else:
                    continue
                if _private(dotted) and not any(
                    name == known and dotted.startswith(prefix)
                    for known, prefix in KNOWN_PRIVATE_PATCHES
                ):
                    yield name, node.lineno, f"patches {dotted}"
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and _dotted(target.value) not in (
                        "self",
                        "cls",
                    ):
                        dotted = _dotted(target)
                        if target.attr.startswith("_") and not target.attr.startswith("__"):
                            yield name, node.lineno, f"assigns {dotted}"


def test_every_fixed_sleep_says_why_it_is_not_a_wait_for_something() -> None:
    unexplained = [
        f"{name}:{line}: {text.strip()}"
        for name, line, text in _fixed_sleeps()
        if "#" not in text or not any(j in text.split("#", 1)[1] for j in JUSTIFICATIONS)
    ]
    assert unexplained == [], "wait on the condition instead, or say why:\n" + "\n".join(
        unexplained
    )


def test_no_test_patches_private_attributes() -> None:
    found = [f"{name}:{line}: {what}" for name, line, what in _private_patches()]
    assert found == [], "\n".join(found)


def test_the_rules_see_what_they_look_for() -> None:
    """The scans find the sleeps and patches this suite is known to keep (not a vacuous pass)."""
    sleeps = {(name, text.strip()) for name, _line, text in _fixed_sleeps()}
    assert any(name == "corekit.py" and "poll interval" in text for name, text in sleeps)
    assert any(name == "daemonkit.py" for name, _ in sleeps)
