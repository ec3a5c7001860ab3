"""``GET /leader/``: who leads, answered by every instance itself (never forwarded)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from aiohttp import web

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import LEADERSHIP


class LeaderInstance(msgspec.Struct, forbid_unknown_fields=True):
    """An instance as the others reach it; hostname is its name as it tells Mesos."""

    instance: str
    api_url: str
    hostname: str


class ThisInstance(msgspec.Struct, forbid_unknown_fields=True):
    """The instance that answered, and its role."""

    instance: str
    api_url: str
    role: str


class LeaderView(msgspec.Struct, forbid_unknown_fields=True):
    """The current leader (null while none is known), its term's epoch and start."""

    leader: LeaderInstance | None
    epoch: int
    since: datetime | None
    this: ThisInstance


def leader_view(app: web.Application) -> LeaderView:
    leadership = app[LEADERSHIP]
    view = leadership.leader()
    this = leadership.this
    leader = view.leader
    return LeaderView(
        leader=None
        if leader is None
        else LeaderInstance(leader.instance, leader.api_url, leader.hostname),
        epoch=view.epoch,
        since=view.since,
        this=ThisInstance(this.instance, this.api_url, leadership.role.value),
    )


async def get_leader(request: web.Request) -> web.Response:
    return json_response(leader_view(request.app))
