"""Run the daemon: build the app, serve the API, stop cleanly on SIGTERM/SIGINT or a fatal error.

Owns the process-level life cycle: signal handlers (SIGTERM/SIGINT stop, SIGHUP re-reads the
logging level), systemd notifications (``READY=1`` once the database is open and the API listens,
``STATUS=`` as the Mesos connection changes, ``WATCHDOG=1`` while the loop is healthy,
``STOPPING=1``), the API's socket (``api.edge_server``: connection cap and timeouts; accept
errors logged once per burst) and the shutdown order: stop accepting API requests and finish
in-flight ones, then close resources in reverse (scheduling core, Mesos stream without
TEARDOWN, store after its last commit). The resources themselves belong to ``api.app.build_app``.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web

from scale_scheduler.api.app import CONNECTION, SCHEDULER, SUPERVISOR, build_app
from scale_scheduler.api.edge_server import ApiListener
from scale_scheduler.daemon.service.accept_errors import install_accept_error_log
from scale_scheduler.daemon.service.config import Config, ConfigError, client_host, load_config
from scale_scheduler.daemon.service.exit_codes import ExitCode, FatalError
from scale_scheduler.daemon.service.logging_setup import set_level
from scale_scheduler.daemon.service.preflight import fatal_error, print_fatal
from scale_scheduler.daemon.service.sd_notify import (
    Notifier,
    describe_connection,
    ping_watchdog,
    report_status,
)

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 5.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    config: Config,
    *,
    reload_level: Callable[[], Coroutine[Any, Any, None]] | None = None,
    notifier: Notifier | None = None,
    app: web.Application | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> ExitCode:
    """Serve until a stop signal or a fatal error; returns the process's exit status.

    ``app`` defaults to ``build_app(config)``; ``on_ready`` is called with the API's URL once it
    listens (the demo uses both to drive the daemon in-process). ``reload_level`` runs on SIGHUP.
    """
    app = build_app(config) if app is None else app
    notifier = notifier or Notifier(None)
    supervisor = app[SUPERVISOR]
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
    )
    loop = asyncio.get_running_loop()
    restore_exception_handler = install_accept_error_log(loop)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, supervisor.stop, signal.Signals(signum).name)
    background: list[asyncio.Task[None]] = []
    reloads: set[asyncio.Task[None]] = set()
    if reload_level is not None:

        def on_sighup() -> None:
            task = loop.create_task(reload_level())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        try:
            await runner.setup()
        except Exception as exc:
            fatal = fatal_error(exc)
            if fatal is None:  # a bug, or a resource failing in a way nothing names
                fatal = FatalError(ExitCode.FAILURE, f"start-up failed: {exc!r}")
                supervisor.fail(fatal.code, str(fatal), exc)
            else:
                supervisor.fail(fatal.code, str(fatal))
            print_fatal(fatal)
            await runner.cleanup()
            return supervisor.exit_code
        # What start-up loaded (modules, every live task, up to a million) lives as long as the
        # process: freeze it out of the collector's reach, so full collections walk only what
        # was allocated since. B3 match p99 and B1 offers/s in bench/RESULTS.md measure it.
        gc.freeze()
        listener = ApiListener(runner, config)
        try:
            await listener.start()
        except OSError as exc:
            supervisor.fail(
                ExitCode.API_BIND_FAILED,
                f"cannot listen on {config.api.host}:{config.api.port}: {exc.strerror or exc}",
            )
            await runner.cleanup()
            return supervisor.exit_code
        url = api_url(config, listener.port)
        log.info("daemon_started", api=url, state_path=config.state.path)

        def describe() -> str:
            paused = ", paused" if app[SCHEDULER].state.is_paused else ""
            return f"API {url}{paused}; {describe_connection(app[CONNECTION])}"

        announced = describe()
        notifier.ready(announced)
        background.append(loop.create_task(report_status(notifier, describe, sent=announced)))
        interval = notifier.watchdog_interval
        if interval is not None:
            background.append(loop.create_task(ping_watchdog(notifier, interval)))
        if on_ready is not None:
            on_ready(url)
        await supervisor.wait()
        log.info("daemon_stopping", reason=supervisor.reason)
        notifier.stopping(f"stopping: {supervisor.reason}")
        await _cancel(background)
        listener.close()
        await runner.cleanup()
        log.info("daemon_stopped", exit_code=int(supervisor.exit_code))
        return supervisor.exit_code
    finally:
        background.extend(reloads)
        await _cancel(background)
        for signum in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        restore_exception_handler()
        notifier.close()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("service_task_failed", error=repr(result))
    tasks.clear()


def api_url(config: Config, port: int | None = None) -> str:
    """Where a client on this machine reaches the API (``port``: the bound one, if known)."""
    return f"http://{client_host(config.api.host)}:{port or config.api.port}/"


async def reload_logging_level(config_path: str | None) -> None:
    """SIGHUP: re-read ``logging.level`` from the config file (other settings need a restart)."""
    try:
        level = (await asyncio.to_thread(load_config, config_path)).logging.level
    except ConfigError as exc:
        log.error("config_reload_failed", error=str(exc))
        return
    set_level(level)
    log.info("logging_level_reloaded", level=level)
