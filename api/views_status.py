"""``/status/``: master, scheduler, queue depth and cluster resources, served from memory."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CLUSTER, CONNECTION, SCHEDULER, SCHEDULER_HOSTNAME
from scale_scheduler.daemon.driver import ConnectionStatus
from scale_scheduler.state.nodes import ClusterResources
from scale_scheduler.state.tasks import Count

_Port = msgspec.Meta(ge=0, le=65535)


class MasterStatus(msgspec.Struct, forbid_unknown_fields=True):
    """The Mesos master the scheduler talks to."""

    hostname: str
    port: Annotated[int, _Port]
    is_online: bool

    @classmethod
    def of(cls, connection: ConnectionStatus) -> MasterStatus:
        return cls(connection.master_hostname, connection.master_port, connection.master_online)


class SchedulerStatus(msgspec.Struct, forbid_unknown_fields=True):
    """This scheduler: its host, whether it is subscribed, whether it is paused."""

    hostname: str
    is_online: bool
    is_paused: bool


class StatusView(msgspec.Struct, forbid_unknown_fields=True):
    """Master, scheduler, queue depth and cluster resources. 'resources' is absent while no
    agent's totals are known."""

    master: MasterStatus
    scheduler: SchedulerStatus
    queue_depth: Count
    resources: ClusterResources | msgspec.UnsetType = msgspec.UNSET


async def get_status(request: web.Request) -> web.Response:
    app = request.app
    connection = app[CONNECTION]
    cluster = app[CLUSTER]
    resources = cluster.resource_summary()
    return json_response(
        StatusView(
            master=MasterStatus.of(connection),
            scheduler=SchedulerStatus(
                hostname=app[SCHEDULER_HOSTNAME],
                is_online=connection.subscribed,
                is_paused=app[SCHEDULER].state.is_paused,
            ),
            queue_depth=cluster.queue_depth,
            resources=msgspec.UNSET if resources is None else resources,
        )
    )
