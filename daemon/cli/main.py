"""``scale-scheduler``: the command line. Parses arguments, configures logging, dispatches.

``run`` is the daemon (its exit statuses are ``ExitCode`` values, listed in README.md's "Exit
statuses"); ``demo`` runs it against a simulated cluster; ``sim`` is the simulator;
the operator commands (``status``, ``pause``, ``tasks``, ...) live in ``operator_cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog

from scale_scheduler.daemon.cli import operator_cli
from scale_scheduler.daemon.service.config import (
    Config,
    ConfigError,
    iter_settings,
    load_config,
    sample_yaml,
)
from scale_scheduler.daemon.service.exit_codes import ExitCode, FatalError
from scale_scheduler.daemon.service.logging_setup import configure_logging

CONFIG_ENV = "SCALE_SCHEDULER_CONFIG"


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML configuration file (default: ${CONFIG_ENV}, else built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scale-scheduler",
        description="A Mesos framework scheduler daemon with an embedded REST API.",
    )
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser("run", help="run the daemon until SIGTERM or SIGINT")
    _add_config_arg(run)

    check = commands.add_parser("check-config", help="validate a configuration and exit")
    _add_config_arg(check)

    commands.add_parser(
        "config-reference", help="print every setting with its type, default and meaning"
    )
    commands.add_parser("config-sample", help="print a commented config.yaml with every default")
    commands.add_parser(
        "sim",
        help="run a simulated Mesos master (see 'scale-scheduler sim --help')",
        add_help=False,
    )
    demo = commands.add_parser(
        "demo",
        help="run the daemon against a simulated Mesos cluster with sample tasks",
        description="Start a simulated Mesos master with agents and the daemon against it, "
        "submit sample tasks and show their progress until Ctrl-C.",
    )
    _add_demo_args(demo)
    _add_state_args(commands)
    operator_cli.add_commands(commands, _add_config_arg)
    return parser


def _add_state_args(commands: Any) -> None:
    state = commands.add_parser("state", help="operate on the durable state (state copy)")
    actions = state.add_subparsers(dest="state_command", metavar="ACTION")
    actions.required = True
    copy = actions.add_parser(
        "copy",
        help="copy a SQLite deployment's state into an empty PostgreSQL database",
        description="Copy every task, node, the pause flag and the framework id from a SQLite "
        "database into an empty PostgreSQL database, in one transaction. Stop the daemon first.",
    )
    copy.add_argument(
        "--from", dest="source", required=True, metavar="sqlite:PATH", help="the SQLite database"
    )
    copy.add_argument(
        "--to", dest="target", required=True, metavar="postgresql://...", help="the target DSN"
    )
    copy.add_argument(
        "--password-file", metavar="PATH", help="the PostgreSQL password (its first line)"
    )


def _add_demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=5, help="simulated agents (default 5)")
    parser.add_argument("--tasks", type=int, default=20, help="sample tasks (default 20)")
    parser.add_argument(
        "--port",
        type=int,
        help="API port (default 8000, or a free one when 8000 is taken; 0 = any free)",
    )
    parser.add_argument(
        "--keep-state",
        metavar="DIR",
        help="keep the database in DIR (default: a temporary directory, removed at exit)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=6.0,
        metavar="SECONDS",
        help="longest run time of a sample task (default 6; each takes 1/3 to all of it)",
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop once every task has ended (instead of running until Ctrl-C)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the daemon's log level, on stderr (default warning)",
    )
    parser.add_argument("--seed", type=int, help="seed the sample tasks and the simulator")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        from scale_scheduler.simulator.cli import main as sim_main

        return sim_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    command = args.subcommand
    if command in operator_cli.COMMANDS:
        return operator_cli.run(args)
    if command == "state":
        return state_copy(args.source, args.target, args.password_file)
    if command == "demo":
        from scale_scheduler.daemon.cli.demo import main as demo_main

        return demo_main(args)
    if command == "config-reference":
        print(config_reference_markdown())
        return ExitCode.OK
    if command == "config-sample":
        sys.stdout.write(sample_yaml())
        return ExitCode.OK
    assert command in ("run", "check-config"), command
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"scale-scheduler: config error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    if command == "check-config":
        return check_config(config, args.config)
    return run_daemon(config, args.config)


def state_copy(source: str, target: str, password_file: str | None) -> int:
    """``state copy --from sqlite:PATH --to postgresql://...``: one line on success or error."""
    from scale_scheduler.state.postgres import copy_from_sqlite as copying

    configure_logging("warning", "console", stream=sys.stderr)  # stdout: the one-line report
    try:
        print(copying.state_copy(source, target, password_file))
    except copying.CopyUsageError as exc:
        print(f"scale-scheduler: state copy: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    except copying.CopyError as exc:
        print(f"scale-scheduler: state copy: {exc}", file=sys.stderr)
        return ExitCode.STORE_ERROR
    return ExitCode.OK


def check_config(config: Config, config_path: str | None) -> int:
    """What ``run`` checks before it serves, without serving: the same exit status."""
    from scale_scheduler.daemon.service.preflight import print_fatal, run_checks

    try:
        warnings = run_checks(config)
    except FatalError as exc:
        print_fatal(exc)
        return exc.code
    for warning in warnings:
        print(f"scale-scheduler: warning: {warning}", file=sys.stderr)
    noted = f" ({len(warnings)} warning{'s' * (len(warnings) != 1)})" if warnings else ""
    print(f"{config_path or '(defaults)'}: OK{noted}")
    return ExitCode.OK


def run_daemon(config: Config, config_path: str | None) -> int:
    """``run``: the checks, then serve. Every non-zero exit is logged once (``daemon_fatal``)."""
    configure_logging(config.logging.level, config.logging.format)
    from scale_scheduler.daemon.service.supervisor import log_fatal

    try:
        return _check_and_serve(config, config_path)
    except KeyboardInterrupt:  # SIGINT before its handler is installed, or after it is removed
        log_fatal(ExitCode.FAILURE, "interrupted outside a clean stop")
        return ExitCode.FAILURE
    except Exception as exc:  # exit 1 is "anything else": logged once, with its traceback
        log_fatal(ExitCode.FAILURE, f"unexpected error: {exc!r}", exc)
        return ExitCode.FAILURE


def _check_and_serve(config: Config, config_path: str | None) -> int:
    from scale_scheduler.daemon.service.preflight import print_fatal, run_checks
    from scale_scheduler.daemon.service.supervisor import log_fatal

    log = structlog.get_logger(__name__)
    try:
        warnings = run_checks(config)
    except FatalError as exc:
        log_fatal(exc.code, str(exc))
        print_fatal(exc)
        return exc.code
    for warning in warnings:
        log.warning("config_warning", key=warning.key, message=warning.message)
    from scale_scheduler.daemon.service.sd_notify import Notifier
    from scale_scheduler.daemon.service.service import reload_logging_level, serve

    notifier = Notifier.from_environ()
    return int(
        asyncio.run(
            serve(
                config,
                reload_level=partial(reload_logging_level, config_path),
                notifier=notifier,
            )
        )
    )


def config_reference_markdown() -> str:
    lines = [
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, typ, default, help_text in iter_settings():
        shown = "`" + repr(default) + "`" if default != "" else '`""`'
        lines.append(f"| `{key}` | {typ} | {shown} | {help_text} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
