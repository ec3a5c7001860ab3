"""The application factory: one ``build_app(config)`` wires every service of the daemon.

Resources are owned by ``cleanup_ctx`` generators, started in order and closed in reverse:
the store (and the state loaded from it), then the Mesos connection, then the scheduling core.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from scale_scheduler.api.access_log import access_log_middleware
from scale_scheduler.api.errors import error_middleware
from scale_scheduler.api.keys import CLUSTER, CONFIG, CONNECTION, SCHEDULER, STORE, ResourceTotals
from scale_scheduler.api.routes import setup_routes
from scale_scheduler.daemon.config import Config, master_address_hint
from scale_scheduler.daemon.driver import ConnectionStatus
from scale_scheduler.daemon.supervisor import Supervisor
from scale_scheduler.state.framework import FrameworkIdRepository
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.store import Store

FRAMEWORK_IDS = web.AppKey("framework_ids", FrameworkIdRepository)
SUPERVISOR = web.AppKey("supervisor", Supervisor)


class EmptyCluster:
    """The cluster view while no scheduling core runs: nothing queued, resources unknown."""

    queue_depth = 0

    def resource_summary(self) -> dict[str, ResourceTotals] | None:
        return None


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


def build_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[
            access_log_middleware,
            error_middleware,
            web.normalize_path_middleware(append_slash=True, merge_slashes=True),
        ],
        client_max_size=config.api.max_body_bytes,
    )
    app[CONFIG] = config
    host, port = master_address_hint(config.mesos.master)
    app[CONNECTION] = ConnectionStatus(master_hostname=host, master_port=port)
    app[CLUSTER] = EmptyCluster()
    app[SUPERVISOR] = Supervisor()
    app.cleanup_ctx.append(store_context)
    setup_routes(app)
    return app
