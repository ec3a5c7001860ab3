"""Read-only calls to the Mesos operator API (``POST /api/v1``) of the current leader.

Used for the agents' total resources (``GET_AGENTS``), which offers alone cannot tell: an agent
whose resources are all in use by other frameworks sends no offer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

from scale_scheduler.daemon.mesos.agent_usage_api import endpoint_from_pid
from scale_scheduler.daemon.mesos.driver import ConnectionStatus, DriverError
from scale_scheduler.daemon.mesos.mesos_types import Resource, Value
from scale_scheduler.state.nodes import AgentTotals, Resources


class _AgentInfo(msgspec.Struct):
    hostname: str
    id: Value | None = None


class _Agent(msgspec.Struct):
    agent_info: _AgentInfo
    active: bool = True
    pid: str | None = None
    total_resources: list[Resource] = msgspec.field(default_factory=list)


class _GetAgents(msgspec.Struct):
    agents: list[_Agent] = msgspec.field(default_factory=list)


class _Response(msgspec.Struct):
    type: str
    get_agents: _GetAgents | None = None


_decoder = msgspec.json.Decoder(_Response)


def parse_get_agents(body: bytes) -> list[AgentTotals]:
    response = _decoder.decode(body)
    agents = response.get_agents.agents if response.get_agents else []
    out: list[AgentTotals] = []
    for agent in agents:
        totals = Resources()
        for resource in agent.total_resources:
            if resource.scalar is None:
                continue
            if resource.name in ("cpus", "mem", "disk", "gpus"):
                current = getattr(totals, resource.name)
                setattr(totals, resource.name, current + resource.scalar.value)
        agent_id = agent.agent_info.id.value if agent.agent_info.id else ""
        endpoint = endpoint_from_pid(agent.pid) if agent.pid else None
        out.append(AgentTotals(agent_id, agent.agent_info.hostname, totals, agent.active, endpoint))
    return out


def make_agents_fetcher(
    status: ConnectionStatus,
    session: Callable[[], aiohttp.ClientSession],
    authorization: Callable[[], str | None],
    timeout: float,
) -> Callable[[], Awaitable[list[AgentTotals]]]:
    """A ``GET_AGENTS`` call to whichever master currently leads (per the driver's status)."""

    async def fetch() -> list[AgentTotals]:
        if not status.subscribed or not status.master_hostname:
            raise DriverError("no leading master is known yet")
        url = f"http://{status.master_hostname}:{status.master_port}/api/v1"
        headers: dict[str, Any] = {"Content-Type": "application/json", "Accept": "application/json"}
        auth = authorization()
        if auth:
            headers["Authorization"] = auth
        try:
            async with session().post(
                url,
                data=b'{"type":"GET_AGENTS"}',
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise DriverError(f"GET_AGENTS answered {response.status}: {body[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"GET_AGENTS failed: {exc!r}") from exc
        try:
            return parse_get_agents(body)
        except msgspec.DecodeError as exc:
            raise DriverError(f"GET_AGENTS answer not understood: {exc}") from exc

    return fetch
