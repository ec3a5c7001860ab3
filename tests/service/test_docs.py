"""The docs stay in step with the code: ``systemd/README.md`` documents every operator command
and option and every demo option; README.md's "Exit statuses" table lists every exit status,
once, with what the shipped unit does, and ``systemd/README.md`` points there."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scale_scheduler.daemon.cli import main as cli
from scale_scheduler.daemon.cli import operator_cli
from scale_scheduler.daemon.service.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "systemd" / "README.md").read_text(encoding="utf-8")
MAIN_README = (ROOT / "README.md").read_text(encoding="utf-8")
UNIT = (ROOT / "systemd" / "scale-scheduler.service").read_text(encoding="utf-8")


def subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[name]
    return sub


def options(name: str) -> list[str]:
    return [
        flag
        for action in subparser(name)._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    ]


@pytest.mark.parametrize("command", [*operator_cli.COMMANDS, "demo"])
def test_every_command_and_option_is_documented(command: str) -> None:
    assert f"scale-scheduler {command}" in README or f"`{command}`" in README, command
    for flag in options(command):
        assert f"`{flag}" in README, f"{command} {flag} is missing from systemd/README.md"


def exit_status_rows() -> dict[int, list[str]]:
    """README.md's "Exit statuses" table: status -> its cells (meaning, restarted)."""
    section = MAIN_README.split("\n### Exit statuses\n", 1)[1].split("\n#", 1)[0]
    rows: dict[int, list[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            assert int(cells[0]) not in rows, f"status {cells[0]} listed twice"
            rows[int(cells[0])] = cells[1:]
    return rows


def test_the_readme_lists_every_exit_status_and_no_other() -> None:
    assert sorted(exit_status_rows()) == sorted(int(code) for code in ExitCode)


def test_the_restarted_column_is_what_the_unit_does() -> None:
    prevented = next(
        line.partition("=")[2].split()
        for line in UNIT.splitlines()
        if line.startswith("RestartPreventExitStatus=")
    )
    not_restarted = {
        status
        for status, (_meaning, restarted) in exit_status_rows().items()
        if restarted.startswith(("no", "**no**"))
    }
    # Restart=on-failure never restarts a clean stop (0); the others are prevented by the unit.
    assert not_restarted == {0, *map(int, prevented)}


def test_the_service_docs_point_to_the_readme_instead_of_repeating_it() -> None:
    assert "(../README.md#exit-statuses)" in README
    for code in ExitCode:
        assert f"\n| {int(code)} | " not in README, f"systemd/README.md lists status {int(code)}"
    header = UNIT.split("[Unit]")[0]
    assert 'README.md, "Exit statuses"' in header
