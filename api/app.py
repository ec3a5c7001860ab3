"""The application factory: one ``build_app(config)`` wires every service of the daemon.

Resources are owned by ``cleanup_ctx`` generators, started in order and closed in reverse:
the store (and the state loaded from it), the pruner of finished tasks, then the Mesos driver
(created, not yet started), then the scheduling core, which starts the driver once its state is
loaded. On shutdown the driver's
stream closes first (no TEARDOWN), then the core stops, then the store commits its last writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from scale_scheduler.api.auth import token_context
from scale_scheduler.api.dashboard import dashboard_context, setup_dashboard
from scale_scheduler.api.edge import edge_middleware, setup_edge
from scale_scheduler.api.keys import CONFIG, CORE, LOOP_SHARE, PRUNER, SCHEDULER_HOSTNAME
from scale_scheduler.api.metrics import METRICS, metrics_context, setup_metrics
from scale_scheduler.api.request_guard import setup_request_guard
from scale_scheduler.api.routes import setup_routes
from scale_scheduler.api.views_status import setup_status
from scale_scheduler.daemon.config import Config, master_address_hint
from scale_scheduler.daemon.core_facade import SchedulerFacade
from scale_scheduler.daemon.driver import ConnectionStatus, SchedulerDriver
from scale_scheduler.daemon.driver_factory import create_driver
from scale_scheduler.daemon.framework_info import read_credentials
from scale_scheduler.daemon.loop_share import LoopShare
from scale_scheduler.daemon.operator_api import make_agents_fetcher
from scale_scheduler.daemon.pruner import Pruner
from scale_scheduler.daemon.scheduler_core import SchedulerCore
from scale_scheduler.daemon.supervisor import Supervisor
from scale_scheduler.state.framework import FrameworkIdRepository
from scale_scheduler.state.interface import MaintainedState
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import read_password_file
from scale_scheduler.state.retention import RetentionPolicy
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store

# What only the wiring touches; the views reach all of it through ``CORE`` (``api.keys``).
STORE = web.AppKey("store", Store)
"""The SQLite store (backend sqlite only)."""
STATE = web.AppKey("state", MaintainedState)
"""The state interface (SQLite over ``STORE``, or PostgreSQL): what the core, the facade and
the pruner use."""
SCHEDULER = web.AppKey("scheduler", SchedulerRepository)
CONNECTION = web.AppKey("connection", ConnectionStatus)
SCHEDULER_CORE = web.AppKey("scheduler_core", SchedulerCore)
FRAMEWORK_IDS = web.AppKey("framework_ids", FrameworkIdRepository)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
DRIVER = web.AppKey("driver", SchedulerDriver)
OPERATOR_SESSION = web.AppKey("operator_session", aiohttp.ClientSession)
FACADE = web.AppKey("facade", SchedulerFacade)
"""``CORE``'s implementation, which the wiring attaches the state and the core to."""


async def resolve_hostname(app: web.Application) -> None:
    """Name lookups may block on DNS: done once, off the loop, never per request."""
    hostname = await asyncio.to_thread(app[CONFIG].effective_hostname)
    app[SCHEDULER_HOSTNAME] = hostname
    app[FACADE].hostname = hostname


async def open_state(app: web.Application) -> SqliteState | PostgresState:
    """The configured backend, open and migrated (``STORE`` too, for SQLite)."""
    settings = app[CONFIG].state
    if settings.backend == "postgresql":
        password = (
            await asyncio.to_thread(read_password_file, settings.password_file)
            if settings.password_file
            else None
        )
        return await PostgresState.open(settings.dsn, password)
    store = app[STORE] = await Store.open(settings.path)
    return SqliteState(store)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    state = await open_state(app)
    try:
        state.on_commit.append(app[METRICS].observe_commit)
        app[STATE] = state
        scheduler = SchedulerRepository(state)
        await scheduler.ensure_and_load()
        app[SCHEDULER] = scheduler
        app[FACADE].attach_state(state, scheduler)
        framework_ids = FrameworkIdRepository(state)
        await framework_ids.load()
        app[FRAMEWORK_IDS] = framework_ids
        yield
    finally:
        await state.close()


async def retention_context(app: web.Application) -> AsyncIterator[None]:
    """Prune finished tasks beyond ``state.retention_*`` and keep the WAL bounded, in the
    background, from start-up to shutdown (stopped before the store closes)."""
    state = app[CONFIG].state
    pruner = Pruner(
        app[STATE],
        RetentionPolicy(state.retention_days, state.retention_max_tasks),
        interval=state.retention_interval,
    )
    await pruner.start()
    app[PRUNER] = pruner
    try:
        yield
    finally:
        await pruner.stop()


async def driver_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    framework_ids = app[FRAMEWORK_IDS]
    driver = create_driver(
        config, framework_ids.framework_id, framework_ids, loop_share=app[LOOP_SHARE]
    )
    app[DRIVER] = driver
    app[CONNECTION] = driver.status
    app[FACADE].connection = driver.status
    try:
        yield
    finally:
        await driver.stop()


async def core_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    driver = app[DRIVER]
    supervisor = app[SUPERVISOR]
    credentials = await asyncio.to_thread(read_credentials, config.mesos)
    session = aiohttp.ClientSession()
    fetch_agents = make_agents_fetcher(
        driver.status,
        lambda: session,
        lambda: credentials.authorization() if credentials else None,
        config.mesos.request_timeout,
    )
    core = SchedulerCore(
        config,
        app[STATE],
        app[SCHEDULER],
        driver,
        fetch_agents=fetch_agents,
        on_fatal=supervisor.fail,
    )
    app[SCHEDULER_CORE] = core
    app[FACADE].attach_core(core)
    try:
        await core.start()
        await driver.start(core)
        yield
    finally:
        await driver.stop()
        await core.stop()
        app[FACADE].detach_core()
        await session.close()


def build_app(config: Config, *, connect_mesos: bool = True) -> web.Application:
    """The daemon as an aiohttp application. ``connect_mesos=False`` serves the API alone."""
    app = web.Application(
        middlewares=[edge_middleware],  # every check, the errors, the access log: api.edge
        client_max_size=config.api.max_body_bytes,
    )
    app[CONFIG] = config
    host, port = master_address_hint(config.mesos.master)
    app[CONNECTION] = ConnectionStatus(master_hostname=host, master_port=port)
    facade = SchedulerFacade(app[CONNECTION])
    app[FACADE] = facade
    app[CORE] = facade
    app[SUPERVISOR] = Supervisor()
    app[LOOP_SHARE] = LoopShare()
    setup_metrics(app)
    setup_dashboard(app)
    setup_request_guard(app)
    setup_edge(app)
    setup_status(app)
    app.cleanup_ctx.append(token_context)  # first: a bad api.token_file stops start-up (exit 2)
    app.on_startup.append(resolve_hostname)
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(retention_context)
    app.cleanup_ctx.append(metrics_context)
    app.cleanup_ctx.append(dashboard_context)
    if connect_mesos:
        app.cleanup_ctx.append(driver_context)
        app.cleanup_ctx.append(core_context)
    setup_routes(app)
    return app
