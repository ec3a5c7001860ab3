"""Agents' total resources from the Mesos operator API (``POST <master>/api/v1`` GET_AGENTS).

``OperatorAgents`` is the default ``AgentsFetcher`` of the scheduling core: an async callable
returning one ``AgentTotals`` per registered agent. It asks the master the driver currently
follows (``ConnectionStatus``), so leader changes need nothing here. It owns no state.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from scale_scheduler.daemon.driver import ConnectionStatus
from scale_scheduler.daemon.mesos_types import Resource, Value
from scale_scheduler.state.nodes import AgentTotals, resources_from_mesos


class _AgentInfo(msgspec.Struct):
    hostname: str
    id: Value | None = None
    resources: list[Resource] = msgspec.field(default_factory=list)


class _Agent(msgspec.Struct):
    agent_info: _AgentInfo
    active: bool = True
    total_resources: list[Resource] | None = None


class _GetAgents(msgspec.Struct):
    agents: list[_Agent] = msgspec.field(default_factory=list)


class _Response(msgspec.Struct):
    type: str = ""
    get_agents: _GetAgents | None = None


_decoder = msgspec.json.Decoder(_Response)


def parse_get_agents(body: bytes) -> list[AgentTotals]:
    """The agents of a GET_AGENTS response (``total_resources``, else the agent's resources)."""
    response = _decoder.decode(body)
    if response.get_agents is None:
        return []
    out = []
    for agent in response.get_agents.agents:
        info = agent.agent_info
        if info.id is None:
            continue
        resources = agent.total_resources
        if resources is None:
            resources = info.resources
        out.append(
            AgentTotals(
                agent_id=info.id.value,
                hostname=info.hostname,
                total=resources_from_mesos(resources),
                active=agent.active,
            )
        )
    return out


class OperatorAgents:
    """``await OperatorAgents(session, status)()`` -> the agents the leading master knows."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        status: ConnectionStatus,
        *,
        scheme: str = "http",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._status = status
        self._scheme = scheme
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if headers:
            self._headers.update(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __call__(self) -> list[AgentTotals]:
        host, port = self._status.master_hostname, self._status.master_port
        url = f"{self._scheme}://{host}:{port}/api/v1"
        body: Any = b'{"type":"GET_AGENTS"}'
        async with self._session.post(
            url, data=body, headers=self._headers, timeout=self._timeout
        ) as response:
            response.raise_for_status()
            return parse_get_agents(await response.read())
