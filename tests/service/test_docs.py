"""``systemd/README.md`` stays in step with the code: every operator command and option, every
demo option and every exit status is documented."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scale_scheduler.daemon import cli, operator_cli
from scale_scheduler.daemon.exit_codes import ExitCode

README = (Path(__file__).resolve().parents[2] / "systemd" / "README.md").read_text(encoding="utf-8")


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


def test_every_exit_status_is_in_the_table() -> None:
    for code in ExitCode:
        assert f"\n| {int(code)} | " in README, code.name
