"""HTTP face of the simulated agents: the usage endpoints a framework polls.

One listening port serves every agent, each under its libprocess id as a real agent's endpoints
are (``/slave(1)/api/v1``, ``/slave(1)/monitor/statistics``): offers carry ``url`` with the
agent's address and that path, as the master builds it (``src/master/master.cpp``), and
GET_AGENTS carries the ``pid`` ``slave(1)@ip:port``.

- ``POST /slave(N)/api/v1`` takes the v1 agent operator API's ``GET_CONTAINERS`` (and
  ``GET_HEALTH``): every container on the agent, of any framework, with its
  ``resource_statistics`` (``simulator/usage.py``).
- ``GET /slave(N)/monitor/statistics[.json]``, the older endpoint: the same statistics per
  executor, at most two answers per second per agent (the agent's limiter delays the rest).

Credentials configured on the cluster are required here too (HTTP Basic). An agent's
``http_mode`` (a fault, ``agent_http``) makes it an old agent without the v1 API or one that
never answers.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from aiohttp import web

from scale_scheduler.simulator.agents import Agent, AgentPool, SimTask
from scale_scheduler.simulator.config import SimConfig
from scale_scheduler.simulator.http import check_basic_auth
from scale_scheduler.simulator.usage import container_statistics

STATISTICS_INTERVAL = 0.5
"""The agent's /monitor/statistics limiter: 2 requests per second."""
_PID = re.compile(r"slave\(([1-9][0-9]{0,8})\)")
_JSON = "application/json"

POOL_KEY = web.AppKey("agent_pool", AgentPool)
CONFIG_KEY = web.AppKey("agent_config", SimConfig)


def build_agent_app(pool: AgentPool, config: SimConfig) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[POOL_KEY] = pool
    app[CONFIG_KEY] = config
    app.router.add_post("/{pid}/api/v1", api_view)
    app.router.add_get("/{pid}/monitor/statistics", statistics_view)
    app.router.add_get("/{pid}/monitor/statistics.json", statistics_view)
    return app


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain", headers=headers)


async def _agent(request: web.Request) -> Agent | web.Response:
    """The addressed agent, after auth and its ``http_mode``; or the answer to give."""
    config = request.app[CONFIG_KEY]
    pool = request.app[POOL_KEY]
    denied, _principal = check_basic_auth(request, dict(config.credentials))
    if denied is not None:
        return denied
    match = _PID.fullmatch(request.match_info["pid"])
    agent = pool.by_index.get(int(match.group(1)) - 1) if match else None
    if agent is None or agent.removed:
        return _text(404, "")
    endpoint = request.path.split("/", 2)[2].removesuffix(".json")
    agent.http_requests[endpoint] += 1
    if agent.http_mode == "silent":
        await asyncio.Event().wait()  # never answers: the client's timeout ends the request
    return agent


def _containers(agent: Agent) -> list[SimTask]:
    return [
        task
        for task in agent.tasks.values()
        if not task.terminal and task.started is not None and task.usage is not None
    ]


def _statistics(task: SimTask, config: SimConfig, now: float) -> dict[str, Any]:
    assert task.usage is not None
    assert task.started is not None
    return container_statistics(
        task.usage, task.resources.scalars, task.started, now, config.disk_usage_isolation
    )


def _executor_name(task: SimTask) -> str:
    return f"Command Executor (Task: {task.task_id}) (Command: sh -c '...')"


async def api_view(request: web.Request) -> web.StreamResponse:
    found = await _agent(request)
    if isinstance(found, web.StreamResponse):
        return found
    agent = found
    if agent.http_mode == "v0":
        return _text(404, "")  # an agent older than the v1 API has no such endpoint
    if request.content_type != _JSON:
        return _text(415, f"Expecting 'Content-Type' of {_JSON}")
    try:
        call = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        return _text(400, f"Failed to parse body into JSON: {exc}")
    call_type = call.get("type") if isinstance(call, dict) else None
    if call_type == "GET_HEALTH":
        return web.json_response({"type": "GET_HEALTH", "get_health": {"healthy": True}})
    if call_type != "GET_CONTAINERS":
        return _text(400, f"Failed to validate agent::Call: unsupported call type {call_type!r}")
    config = request.app[CONFIG_KEY]
    now = request.app[POOL_KEY].timers.wall()
    containers = [
        {
            "framework_id": {"value": task.framework_id},
            "executor_id": {"value": task.task_id},
            "executor_name": _executor_name(task),
            "container_id": {"value": task.container_id},
            "container_status": {"container_id": {"value": task.container_id}},
            "resource_statistics": _statistics(task, config, now),
        }
        for task in _containers(agent)
    ]
    body = {"type": "GET_CONTAINERS", "get_containers": {"containers": containers}}
    return web.Response(body=msgspec.json.encode(body), content_type=_JSON)


async def statistics_view(request: web.Request) -> web.StreamResponse:
    found = await _agent(request)
    if isinstance(found, web.StreamResponse):
        return found
    agent = found
    loop = asyncio.get_running_loop()
    slot = max(loop.time(), agent.statistics_next)
    agent.statistics_next = slot + STATISTICS_INTERVAL
    if slot > loop.time():
        await asyncio.sleep(slot - loop.time())  # paced: the agent's limiter, 2 per second
    config = request.app[CONFIG_KEY]
    now = request.app[POOL_KEY].timers.wall()
    body = [
        {
            "framework_id": task.framework_id,
            "executor_id": task.task_id,
            "executor_name": _executor_name(task),
            "source": task.task_id,
            "statistics": _statistics(task, config, now),
        }
        for task in _containers(agent)
    ]
    return web.Response(body=msgspec.json.encode(body), content_type=_JSON)
