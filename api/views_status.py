"""``/status/``: master, scheduler, queue depth and cluster resources, served from memory."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CLUSTER, CONNECTION, SCHEDULER, SCHEDULER_HOSTNAME


async def get_status(request: web.Request) -> web.Response:
    app = request.app
    connection = app[CONNECTION]
    cluster = app[CLUSTER]
    body: dict[str, Any] = {
        "master": {
            "hostname": connection.master_hostname,
            "port": connection.master_port,
            "is_online": connection.master_online,
        },
        "scheduler": {
            "hostname": app[SCHEDULER_HOSTNAME],
            "is_online": connection.subscribed,
            "is_paused": app[SCHEDULER].state.is_paused,
        },
        "queue_depth": cluster.queue_depth,
    }
    resources = cluster.resource_summary()
    if resources is not None:
        body["resources"] = resources
    return json_response(body)
