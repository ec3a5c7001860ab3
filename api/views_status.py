"""``/status/``: master, scheduler, queue depth and cluster resources, served from memory.

The body is the core's status snapshot (``CoreFacade.status``), the one ``/metrics`` and the
dashboard read too. It is encoded once per snapshot: while nothing it shows changes, every
request is answered with the same bytes.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from scale_scheduler.api.keys import CORE
from scale_scheduler.daemon.scheduling.core_facade import StatusView

_encode = msgspec.json.Encoder().encode


class EncodedStatus:
    """The last snapshot and its JSON, kept per application."""

    __slots__ = ("body", "snapshot")

    def __init__(self) -> None:
        self.snapshot: StatusView | None = None
        self.body = b""

    def of(self, snapshot: StatusView) -> bytes:
        if snapshot is not self.snapshot:
            self.body = _encode(snapshot)
            self.snapshot = snapshot
        return self.body


ENCODED_STATUS = web.AppKey("encoded_status", EncodedStatus)


def setup_status(app: web.Application) -> None:
    app[ENCODED_STATUS] = EncodedStatus()


async def get_status(request: web.Request) -> web.Response:
    app = request.app
    core = app[CORE]
    if core.is_standby:  # answering itself: no leader could (``leader_forwarding``)
        body = _encode(await core.stored_status())
        return web.Response(body=body, content_type="application/json")
    body = app[ENCODED_STATUS].of(core.status())
    return web.Response(body=body, content_type="application/json")
