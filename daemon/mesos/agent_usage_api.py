"""Asking one Mesos agent what its containers use: the agent's own HTTP endpoints.

``AgentUsageClient.fetch(endpoint)`` posts ``GET_CONTAINERS`` to the v1 agent operator API
(``<endpoint>/api/v1``) and, on an agent that answers 404 to it (older than the v1 API), reads
``<endpoint>/monitor/statistics`` instead, from then on. ``endpoint`` is where the agent's
process serves its endpoints: ``http://ip:port/slave(1)``, from an offer's ``url`` or
GET_AGENTS's ``pid`` (``endpoint_from_offer_url``, ``endpoint_from_pid``). The agent checks the
framework's HTTP Basic credentials when it has authentication on.

This module decodes the answers into ``ContainerReading``s; it keeps no usage state.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Protocol

import aiohttp
import msgspec

from scale_scheduler.daemon.mesos.http_calls import (
    CallNotSentError,
    CallUnansweredError,
    HttpCallClient,
)
from scale_scheduler.daemon.mesos.mesos_types import Value
from scale_scheduler.daemon.mesos.usage_math import ContainerReading, sample_of

MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""An agent's answer beyond this is refused (thousands of containers take a few MiB)."""
_GET_CONTAINERS = b'{"type":"GET_CONTAINERS"}'


class AgentUsageError(Exception):
    """The agent did not answer usefully; the message says how (never a credential)."""


class AgentGarbageError(AgentUsageError):
    """The agent answered 200 with something that is not what the call returns."""


# --- wire shapes (agent.proto, mesos.proto ResourceStatistics) --------------------------------


class _Statistics(msgspec.Struct, gc=False):
    timestamp: float
    cpus_user_time_secs: float | None = None
    cpus_system_time_secs: float | None = None
    mem_rss_bytes: float | None = None
    mem_total_bytes: float | None = None
    disk_used_bytes: float | None = None


class _Container(msgspec.Struct, gc=False):
    framework_id: Value
    executor_id: Value
    container_id: Value | None = None
    resource_statistics: _Statistics | None = None


class _GetContainers(msgspec.Struct, gc=False):
    containers: list[_Container] = msgspec.field(default_factory=list)


class _Response(msgspec.Struct, gc=False):
    type: str
    get_containers: _GetContainers | None = None


class _ExecutorStatistics(msgspec.Struct, gc=False):
    framework_id: str
    executor_id: str
    statistics: _Statistics


_containers_decoder = msgspec.json.Decoder(_Response)
_statistics_decoder = msgspec.json.Decoder(list[_ExecutorStatistics])


def _reading(
    framework_id: str, executor_id: str, container_id: str | None, stats: _Statistics
) -> ContainerReading:
    sample = sample_of(
        stats.timestamp,
        cpus_user_time_secs=stats.cpus_user_time_secs,
        cpus_system_time_secs=stats.cpus_system_time_secs,
        mem_rss_bytes=stats.mem_rss_bytes,
        mem_total_bytes=stats.mem_total_bytes,
        disk_used_bytes=stats.disk_used_bytes,
    )
    key = container_id if container_id is not None else f"{framework_id}\n{executor_id}"
    return ContainerReading(key, framework_id, executor_id, container_id, sample)


def parse_get_containers(body: bytes) -> list[ContainerReading]:
    """The containers of a ``GET_CONTAINERS`` answer that carry statistics."""
    try:
        response = _containers_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise AgentGarbageError(f"GET_CONTAINERS answer not understood: {exc}") from None
    if response.type != "GET_CONTAINERS" or response.get_containers is None:
        raise AgentGarbageError(f"GET_CONTAINERS answered with type {response.type[:40]!r}")
    return [
        _reading(
            c.framework_id.value,
            c.executor_id.value,
            c.container_id.value if c.container_id is not None else None,
            c.resource_statistics,
        )
        for c in response.get_containers.containers
        if c.resource_statistics is not None
    ]


def parse_monitor_statistics(body: bytes) -> list[ContainerReading]:
    """The executors of a ``/monitor/statistics`` answer (no container ids there)."""
    try:
        entries = _statistics_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise AgentGarbageError(f"/monitor/statistics answer not understood: {exc}") from None
    return [_reading(e.framework_id, e.executor_id, None, e.statistics) for e in entries]


# --- where an agent serves its endpoints ------------------------------------------------------


class _OfferAddress(msgspec.Struct):
    hostname: str | None = None
    ip: str | None = None
    port: int | None = None


class _OfferUrl(msgspec.Struct):
    address: _OfferAddress
    scheme: str = "http"
    path: str = ""


_offer_url_decoder = msgspec.json.Decoder(_OfferUrl | None)


def _endpoint(scheme: str, host: str, port: int, path: str) -> str | None:
    if scheme not in ("http", "https") or not host or not 0 < port < 65536:
        return None
    if any(c in host for c in "/?#@ ") or any(c in path for c in "?# "):
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{'/' + path.strip('/') if path.strip('/') else ''}"


def endpoint_from_offer_url(raw: bytes | msgspec.Raw) -> str | None:
    """The agent's endpoint from an offer's ``url`` (``mesos.v1.URL``), or None without one."""
    try:
        url = _offer_url_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    if url is None or url.address.port is None:
        return None
    host = url.address.ip or url.address.hostname or ""
    return _endpoint(url.scheme, host, url.address.port, url.path)


def endpoint_from_pid(pid: str, scheme: str = "http") -> str | None:
    """The agent's endpoint from its libprocess pid (``slave(1)@10.0.0.5:5051``)."""
    process, sep, address = pid.partition("@")
    host, colon, port = address.rpartition(":")
    if not sep or not process or not colon or not port.isascii() or not port.isdigit():
        return None
    return _endpoint(scheme, host.strip("[]"), int(port), process)


# --- the client -------------------------------------------------------------------------------


class AgentUsageFetcher(Protocol):
    """What the usage poller asks through: this module's client in the daemon's process, or the
    usage worker process (``usage_worker_client``) in production."""

    async def fetch(self, endpoint: str) -> list[ContainerReading]:
        """The agent's containers with statistics; raises ``AgentUsageError``."""
        ...


class AgentUsageClient:
    """Fetches one agent's container statistics at a time (the poller bounds concurrency)."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        authorization: Callable[[], str | None],
        timeout: float,
    ) -> None:
        self._session = session
        self._authorization = authorization
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl_context: ssl.SSLContext | None = None
        self.v0_endpoints: set[str] = set()
        """Endpoints that answered 404 to the v1 API: asked on /monitor/statistics since."""

    def _headers(self, json_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if json_body:
            headers["Content-Type"] = "application/json"
        auth = self._authorization()
        if auth:
            headers["Authorization"] = auth
        return headers

    async def fetch(self, endpoint: str) -> list[ContainerReading]:
        """The agent's containers with statistics; raises ``AgentUsageError``."""
        if endpoint not in self.v0_endpoints:
            status, body = await self._get_containers(endpoint)
            if status == 200:
                return parse_get_containers(body)
            if status != 404:
                raise AgentUsageError(f"GET_CONTAINERS answered {status}")
            self.v0_endpoints.add(endpoint)
        status, body = await self._request("GET", f"{endpoint}/monitor/statistics", None)
        if status != 200:
            raise AgentUsageError(f"/monitor/statistics answered {status}")
        return parse_monitor_statistics(body)

    async def _get_containers(self, endpoint: str) -> tuple[int, bytes]:
        """POST GET_CONTAINERS on one connection of the daemon's lean client (``http_calls``),
        closed after the answer: aiohttp's client cost the loop about twice as much per agent,
        thousands of times a round (``bench/usage_poll.py``)."""
        context = None
        if endpoint.startswith("https:"):
            if self._ssl_context is None:
                # Reads the system's certificate store: off the loop, once.
                self._ssl_context = await asyncio.to_thread(ssl.create_default_context)
            context = self._ssl_context
        headers = self._headers(json_body=True)
        headers["Connection"] = "close"
        try:
            client = HttpCallClient(
                f"{endpoint}/api/v1",
                headers,
                timeout=self._timeout.total or 0.0,
                max_connections=1,
                ssl_context=context,
                max_body=MAX_ANSWER_BYTES + 1,
            )
        except ValueError as exc:
            raise AgentUsageError(f"POST failed: {exc}") from None
        try:
            # The client bounds each silence; this bounds the whole answer (a slow drip too).
            response = await asyncio.wait_for(client.post(_GET_CONTAINERS), self._timeout.total)
        except (CallNotSentError, CallUnansweredError, asyncio.TimeoutError) as exc:
            raise AgentUsageError(f"POST failed: {type(exc).__name__} {exc}") from None
        finally:
            client.close()
        if response.status != 200:
            return response.status, b""
        if len(response.body) > MAX_ANSWER_BYTES:
            raise AgentGarbageError(f"answer over {MAX_ANSWER_BYTES} bytes")
        return 200, response.body

    async def _request(self, method: str, url: str, data: bytes | None) -> tuple[int, bytes]:
        try:
            async with self._session().request(
                method,
                url,
                data=data,
                headers=self._headers(data is not None),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    return response.status, b""
                if (response.content_length or 0) > MAX_ANSWER_BYTES:
                    raise AgentGarbageError(f"answer over {MAX_ANSWER_BYTES} bytes")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise AgentGarbageError(f"answer over {MAX_ANSWER_BYTES} bytes")
                    chunks.append(chunk)
                return 200, b"".join(chunks)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            # ValueError: aiohttp refuses a malformed URL (an agent that named a bad address).
            raise AgentUsageError(f"{method} failed: {type(exc).__name__} {exc}") from None
