"""Run the daemon: build the app, serve the API, stop cleanly on SIGTERM/SIGINT or a fatal error.

Shutdown order: stop accepting API requests and finish in-flight ones, then close resources in
reverse (scheduling core, Mesos stream without TEARDOWN, store after its last commit).
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from scale_scheduler.api.app import SUPERVISOR, build_app
from scale_scheduler.daemon.config import Config, ConfigError
from scale_scheduler.daemon.exit_codes import ExitCode
from scale_scheduler.daemon.framework_info import CredentialsError
from scale_scheduler.daemon.logging_setup import set_level
from scale_scheduler.state.store import StoreError

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0


async def serve(config: Config, *, reload_level: object = None) -> ExitCode:
    app = build_app(config)
    supervisor = app[SUPERVISOR]
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, supervisor.stop, signal.Signals(signum).name)
    if callable(reload_level):
        loop.add_signal_handler(signal.SIGHUP, reload_level)
    try:
        try:
            await runner.setup()
        except StoreError as exc:
            supervisor.fail(ExitCode.STORE_ERROR, str(exc))
            return supervisor.exit_code
        except (ConfigError, CredentialsError) as exc:
            supervisor.fail(ExitCode.CONFIG_ERROR, str(exc))
            await runner.cleanup()
            return supervisor.exit_code
        except OSError as exc:
            supervisor.fail(ExitCode.STORE_ERROR, f"cannot open {config.state.path}: {exc}")
            return supervisor.exit_code
        site = web.TCPSite(runner, config.api.host, config.api.port)
        try:
            await site.start()
        except OSError as exc:
            supervisor.fail(
                ExitCode.API_BIND_FAILED,
                f"cannot listen on {config.api.host}:{config.api.port}: {exc.strerror or exc}",
            )
            await runner.cleanup()
            return supervisor.exit_code
        log.info("daemon_started", api=api_url(config, runner), state_path=config.state.path)
        await supervisor.wait()
        log.info("daemon_stopping", reason=supervisor.reason)
        await runner.cleanup()
        log.info("daemon_stopped", exit_code=int(supervisor.exit_code))
        return supervisor.exit_code
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def api_url(config: Config, runner: web.AppRunner | None = None) -> str:
    host, port = config.api.host, config.api.port
    if runner is not None and runner.addresses:  # the real port when 0 was asked for
        port = runner.addresses[0][1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}/"


def reload_logging_level(config_path: str | None) -> None:
    """SIGHUP: re-read ``logging.level`` from the config file (other settings need a restart)."""
    from scale_scheduler.daemon.config import ConfigError, load_config

    try:
        level = load_config(config_path).logging.level
    except ConfigError as exc:
        log.error("config_reload_failed", error=str(exc))
        return
    set_level(level)
    log.info("logging_level_reloaded", level=level)
