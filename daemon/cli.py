"""``scale-scheduler``: the command line. Parses arguments, configures logging, dispatches.

Exit statuses are ``ExitCode`` values: 2 for a configuration error, 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from functools import partial

import structlog

from scale_scheduler.daemon.config import ConfigError, iter_settings, load_config, sample_yaml
from scale_scheduler.daemon.exit_codes import ExitCode
from scale_scheduler.daemon.logging_setup import configure_logging

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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sim":
        from scale_scheduler.simulator.cli import main as sim_main

        return sim_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "config-reference":
        print(config_reference_markdown())
        return ExitCode.OK
    if args.command == "config-sample":
        sys.stdout.write(sample_yaml())
        return ExitCode.OK
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"scale-scheduler: config error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    if args.command == "check-config":
        print(f"{args.config or '(defaults)'}: OK")
        return ExitCode.OK
    configure_logging(config.logging.level, config.logging.format)
    from scale_scheduler.daemon.service import reload_logging_level, serve

    try:
        return int(
            asyncio.run(serve(config, reload_level=partial(reload_logging_level, args.config)))
        )
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        structlog.get_logger(__name__).warning("daemon_interrupted")
        return ExitCode.FAILURE


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
