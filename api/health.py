"""Health checks: ``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), both text/plain.

Liveness is answered by the event loop itself: if this handler runs, the process and its loop are
alive (a blocked loop answers nothing, and the probe times out). Readiness needs the database
open and answering, and, on the leader, the framework subscribed to a Mesos master; a standby
(which does not subscribe) is ready while it knows a leader to forward to, and says "standby".
Otherwise 503 names every reason, one per line, so an operator reading a probe's output knows
what to fix.

This module reads state only.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from scale_scheduler.api.keys import CORE
from scale_scheduler.api.metrics import METRICS

DATABASE_CHECK_TIMEOUT = 2.0
_NOT_STARTED = "the daemon is starting or stopping"


def _text(status: int, lines: list[str]) -> web.Response:
    return web.Response(
        status=status,
        text="\n".join(lines) + "\n",
        content_type="text/plain",
        headers={"Cache-Control": "no-store"},
    )


async def get_healthz(request: web.Request) -> web.Response:
    metrics = request.app.get(METRICS)
    lines = ["ok"]
    if metrics is not None:
        lines.append(f"event loop lag: {metrics.last_loop_lag:.3f} s")
    return _text(200, lines)


async def not_ready_reasons(app: web.Application) -> list[str]:
    """Why the daemon is not ready (empty when it is)."""
    reasons: list[str] = []
    core = app[CORE]
    if not core.database_open:
        reasons.append(f"database: not open ({_NOT_STARTED})")
    else:
        try:
            await asyncio.wait_for(core.ping_database(), DATABASE_CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            reasons.append(f"database: no answer within {DATABASE_CHECK_TIMEOUT:g} s")
        except Exception as exc:
            reasons.append(f"database: {exc}")
    if core.is_standby:
        if core.leader().leader is None:
            reasons.append("standby: no leader is known to forward requests to")
        return reasons
    connection = core.connection
    if not connection.subscribed:
        master = f"{connection.master_hostname}:{connection.master_port}"
        reason = (
            f"mesos: not subscribed to the master at {master} "
            f"(connection {connection.state.value.lower()})"
        )
        if connection.last_error:
            reason += f": {connection.last_error}"
        reasons.append(reason)
    return reasons


async def get_readyz(request: web.Request) -> web.Response:
    reasons = await not_ready_reasons(request.app)
    if reasons:
        return _text(503, ["not ready", *reasons])
    core = request.app[CORE]
    if core.is_standby:
        view = core.leader()
        assert view.leader is not None  # else not ready
        return _text(
            200,
            [
                "ready",
                f"standby: requests are forwarded to the leader {view.leader.instance} at "
                f"{view.leader.api_url} (epoch {view.epoch})",
            ],
        )
    connection = core.connection
    return _text(
        200,
        [
            "ready",
            f"mesos: subscribed to {connection.master_hostname}:{connection.master_port} "
            f"as framework {connection.framework_id}",
        ],
    )
