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

from scale_scheduler.api.access_log import access_log_middleware
from scale_scheduler.api.auth import auth_middleware, token_context
from scale_scheduler.api.dashboard import dashboard_context, setup_dashboard
from scale_scheduler.api.edge_server import (
    body_deadline_middleware,
    connection_activity_middleware,
)
from scale_scheduler.api.errors import error_middleware
from scale_scheduler.api.keys import (
    CLUSTER,
    CONFIG,
    CONNECTION,
    CORE,
    LOOP_SHARE,
    PRUNER,
    SCHEDULER,
    SCHEDULER_HOSTNAME,
    STORE,
)
from scale_scheduler.api.metrics import metrics_context, setup_metrics
from scale_scheduler.api.request_guard import request_guard_middleware, setup_request_guard
from scale_scheduler.api.routes import setup_routes
from scale_scheduler.daemon.agent_usage_api import AgentUsageClient
from scale_scheduler.daemon.config import Config, master_address_hint
from scale_scheduler.daemon.driver import ConnectionStatus, SchedulerDriver
from scale_scheduler.daemon.driver_factory import create_driver
from scale_scheduler.daemon.framework_info import read_credentials
from scale_scheduler.daemon.loop_share import LoopShare
from scale_scheduler.daemon.operator_api import make_agents_fetcher
from scale_scheduler.daemon.pruner import Pruner
from scale_scheduler.daemon.scheduler_core import SchedulerCore
from scale_scheduler.daemon.supervisor import Supervisor
from scale_scheduler.state.framework import FrameworkIdRepository
from scale_scheduler.state.nodes import ClusterResources
from scale_scheduler.state.retention import RetentionPolicy
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.store import Store

FRAMEWORK_IDS = web.AppKey("framework_ids", FrameworkIdRepository)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
DRIVER = web.AppKey("driver", SchedulerDriver)
OPERATOR_SESSION = web.AppKey("operator_session", aiohttp.ClientSession)


class EmptyCluster:
    """The cluster view while no scheduling core runs: nothing queued, resources unknown."""

    queue_depth = 0

    def resource_summary(self) -> ClusterResources | None:
        return None


async def resolve_hostname(app: web.Application) -> None:
    """Name lookups may block on DNS: done once, off the loop, never per request."""
    app[SCHEDULER_HOSTNAME] = await asyncio.to_thread(app[CONFIG].effective_hostname)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await Store.open(config.state.path)
    try:
        app[STORE] = store
        scheduler = SchedulerRepository(store)
        await scheduler.ensure_and_load()
        app[SCHEDULER] = scheduler
        framework_ids = FrameworkIdRepository(store)
        await framework_ids.load()
        app[FRAMEWORK_IDS] = framework_ids
        yield
    finally:
        await store.close()


async def retention_context(app: web.Application) -> AsyncIterator[None]:
    """Prune finished tasks beyond ``state.retention_*`` and keep the WAL bounded, in the
    background, from start-up to shutdown (stopped before the store closes)."""
    state = app[CONFIG].state
    pruner = Pruner(
        app[STORE],
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
    # For agents without the v1 API (/monitor/statistics): its own connections, at most
    # usage.concurrency, closed after each answer (kept-alive ones would hold a socket per
    # agent between rounds). GET_CONTAINERS goes over the lean client, closed alike.
    usage_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.usage.concurrency, force_close=True)
    )
    usage_client = AgentUsageClient(
        lambda: usage_session,
        lambda: credentials.authorization() if credentials else None,
        config.usage.timeout,
    )
    core = SchedulerCore(
        config,
        app[STORE],
        app[SCHEDULER],
        driver,
        fetch_agents=fetch_agents,
        usage_client=usage_client,
        on_fatal=supervisor.fail,
    )
    app[CORE] = core
    app[CLUSTER] = core
    try:
        await core.start()
        await driver.start(core)
        yield
    finally:
        await driver.stop()
        await core.stop()
        await session.close()
        await usage_session.close()


def build_app(config: Config, *, connect_mesos: bool = True) -> web.Application:
    """The daemon as an aiohttp application. ``connect_mesos=False`` serves the API alone."""
    app = web.Application(
        middlewares=[
            connection_activity_middleware,
            access_log_middleware,
            error_middleware,
            request_guard_middleware,
            auth_middleware,
            web.normalize_path_middleware(append_slash=True, merge_slashes=True),
            body_deadline_middleware,  # last: normalize_path clones the request, unread only
        ],
        client_max_size=config.api.max_body_bytes,
    )
    app[CONFIG] = config
    host, port = master_address_hint(config.mesos.master)
    app[CONNECTION] = ConnectionStatus(master_hostname=host, master_port=port)
    app[CLUSTER] = EmptyCluster()
    app[SUPERVISOR] = Supervisor()
    app[LOOP_SHARE] = LoopShare()
    setup_metrics(app)
    setup_dashboard(app)
    setup_request_guard(app)
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
