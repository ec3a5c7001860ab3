"""The application factory: one ``build_app(config)`` wires every service of the daemon.

Resources are owned by ``cleanup_ctx`` generators, started in order and closed in reverse:
the store (and the state loaded from it), the pruner of finished tasks, the leadership (this
instance's part in the election, or the single instance that always leads), then the Mesos
driver (created, not yet started), then the scheduling core, which starts the driver once its
state is loaded and this instance leads: at once for the leader, when elected for a standby
(which serves the API meanwhile, forwarding to the leader, and does not subscribe). A leader that
loses its term stops the daemon with exit status 7 (deposed: restarted as a standby); its driver
only calls Mesos while its term is live (``daemon/service/leader_guard.py``). On shutdown the
driver's stream closes first (no TEARDOWN), then the core stops, then the leadership hands its
term back, then the store commits its last writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web

from scale_scheduler.api.auth import token_context
from scale_scheduler.api.dashboard import dashboard_context, setup_dashboard
from scale_scheduler.api.edge import edge_middleware, setup_edge
from scale_scheduler.api.keys import CONFIG, CORE, LOOP_SHARE, PRUNER, SCHEDULER_HOSTNAME
from scale_scheduler.api.leader_forwarding import forwarding_context
from scale_scheduler.api.metrics import METRICS, metrics_context, setup_metrics
from scale_scheduler.api.request_guard import setup_request_guard
from scale_scheduler.api.routes import setup_routes
from scale_scheduler.api.views_status import setup_status
from scale_scheduler.daemon.mesos.driver import ConnectionStatus, SchedulerDriver
from scale_scheduler.daemon.mesos.driver_factory import create_driver
from scale_scheduler.daemon.mesos.framework_info import read_credentials
from scale_scheduler.daemon.mesos.loop_share import LoopShare
from scale_scheduler.daemon.mesos.operator_api import make_agents_fetcher
from scale_scheduler.daemon.mesos.usage_worker_client import AgentUsageWorker
from scale_scheduler.daemon.scheduling.core_facade import SchedulerFacade
from scale_scheduler.daemon.scheduling.leaderless import Leaderless
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.service.config import Config, master_address_hint
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.leader_guard import LeaderGuardedDriver
from scale_scheduler.daemon.service.leadership import Leadership, create_leadership
from scale_scheduler.daemon.service.leadership_terms import (
    Role,
    exit_status_of_mesos_error,
    machine_name,
    this_instance,
)
from scale_scheduler.daemon.service.pruner import Pruner
from scale_scheduler.daemon.service.supervisor import Supervisor
from scale_scheduler.state.framework import FrameworkIdRepository
from scale_scheduler.state.interface import MaintainedState
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import read_password_file
from scale_scheduler.state.retention import RetentionPolicy
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store

log = structlog.get_logger(__name__)

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


@dataclass
class FenceEpoch:
    """The epoch this process's state writes are fenced by: set when it starts leading and kept
    until it exits (a deposed leader exits, status 7); None while it stands by."""

    epoch: int | None = None

    def __call__(self) -> int | None:
        return self.epoch


FENCE = web.AppKey("fence", FenceEpoch)
LEADERSHIP = web.AppKey("leadership", Leadership)
"""Whether this instance leads (``daemon/service/leadership.py``); the API reads it through
``CORE``."""


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
        # Every transaction is fenced by the epoch this process leads in (none while it stands
        # by): a deposed leader's late write fails and changes nothing. A transaction left open
        # (the process paused) ends with the lease, so that it holds no new term back.
        return await PostgresState.open(
            settings.dsn,
            password,
            fence=app[FENCE],
            idle_transaction_timeout=app[CONFIG].ha.lease_seconds,
        )
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
        if isinstance(state, PostgresState):  # a standby writes itself while no instance leads
            app[FACADE].attach_leaderless(Leaderless(state, state))
        framework_ids = FrameworkIdRepository(state)
        await framework_ids.load_framework_id()
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


async def leadership_context(app: web.Application) -> AsyncIterator[None]:
    """Take part in the election (or be the single instance): the first attempt to lead is made
    before the scheduling core starts, so a lone instance leads from its start."""
    config = app[CONFIG]
    machine = await asyncio.to_thread(machine_name)
    hostname = await asyncio.to_thread(config.effective_hostname)
    this = this_instance(
        instance=config.ha.instance,
        advertise_url=config.ha.advertise_url,
        api_host=config.api.host,
        api_port=config.api.port,
        machine=machine,
        hostname=hostname,
    )
    leadership = create_leadership(config, this)
    await leadership.start()
    app[LEADERSHIP] = leadership
    app[FACADE].attach_leadership(leadership)
    log.info(
        "leadership_started",
        instance=this.instance,
        api_url=this.api_url,
        role=leadership.role.value,
        epoch=leadership.epoch,
        election=leadership.high_availability,
    )
    try:
        yield
    finally:
        await leadership.stop()


async def driver_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    framework_ids = app[FRAMEWORK_IDS]
    driver = create_driver(
        config,
        framework_ids.framework_id,
        framework_ids,
        loop_share=app[LOOP_SHARE],
        may_subscribe=app[LEADERSHIP].may_act,
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
    leadership = app[LEADERSHIP]

    def deposed(reason: str) -> None:
        supervisor.fail(ExitCode.DEPOSED, f"no longer the leader: {reason}")

    def on_fatal(code: ExitCode, message: str) -> None:
        if code is ExitCode.FRAMEWORK_REFUSED:
            code = exit_status_of_mesos_error(
                message, high_availability=leadership.high_availability
            )
        supervisor.fail(code, message)

    guarded = LeaderGuardedDriver(driver, leadership.may_act, deposed)
    credentials = await asyncio.to_thread(read_credentials, config.mesos)
    session = aiohttp.ClientSession()
    fetch_agents = make_agents_fetcher(
        driver.status,
        lambda: session,
        lambda: credentials.authorization() if credentials else None,
        config.mesos.request_timeout,
    )
    # The agents are asked for their usage by a worker process, off this loop.
    usage_client = AgentUsageWorker(
        config.usage.timeout,
        config.usage.concurrency,
        lambda: credentials.authorization() if credentials else None,
    )
    core = SchedulerCore(
        config,
        app[STATE],
        app[SCHEDULER],
        guarded,
        fetch_agents=fetch_agents,
        usage_client=usage_client,
        on_fatal=on_fatal,
    )
    app[SCHEDULER_CORE] = core
    app[FACADE].attach_core(core)
    leading: list[asyncio.Task[None]] = []
    led = False

    async def lead() -> None:
        """Load the state, then subscribe (with the stored framework id) and reconcile.

        The term's election has committed by now, so the load sees every write a standby
        committed while no instance led, and none commits after it (``leaderless``). The pause
        flag is read again: the one read at this instance's start may have changed since."""
        nonlocal led
        led = True
        app[FENCE].epoch = leadership.epoch
        log.info("leading", instance=leadership.this.instance, epoch=leadership.epoch)
        await app[SCHEDULER].ensure_and_load()
        await core.start()
        await guarded.start(core)

    async def lead_in_background() -> None:
        try:
            await lead()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            supervisor.fail(ExitCode.FAILURE, f"cannot start leading: {exc!r}", exc)

    def on_role(role: Role, reason: str) -> None:
        if role is Role.STANDBY:
            deposed(reason)
        elif not led and not supervisor.stopping:
            leading.append(asyncio.get_running_loop().create_task(lead_in_background()))

    try:
        leadership.add_listener(on_role)
        if leadership.role is Role.LEADER:
            await lead()
        else:
            log.info("standing_by", instance=leadership.this.instance, epoch=leadership.epoch)
        yield
    finally:
        for task in leading:
            task.cancel()
        await asyncio.gather(*leading, return_exceptions=True)
        await driver.stop()
        await core.stop()
        app[FACADE].detach_core()
        await session.close()
        await usage_client.close()


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
    app[FENCE] = FenceEpoch()
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
    app.cleanup_ctx.append(leadership_context)
    app.cleanup_ctx.append(forwarding_context)
    if connect_mesos:
        app.cleanup_ctx.append(driver_context)
        app.cleanup_ctx.append(core_context)
    setup_routes(app)
    return app
