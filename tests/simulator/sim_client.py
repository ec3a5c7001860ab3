"""A small v1 scheduler client and task builders that drive the simulator in tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import msgspec

FAST = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.2,
    "task_start_delay": 0.04,
    "kill_delay": 0.03,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "seed": 7,
}


def framework_info(**extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "user": "tester",
        "name": "sim-test",
        "failover_timeout": 60.0,
        "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "TASK_KILLING_STATE"}],
    }
    info.update(extra)
    return info


class SchedulerClient:
    """Just enough of a v1 scheduler client to drive the simulator from tests."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/") + "/api/v1/scheduler"
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.heartbeats = 0
        self.events_read = 0  # heartbeats included
        self.stream_id: str | None = None
        self.framework_id: str | None = None
        self.status: int | None = None
        self.response: aiohttp.ClientResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._front: list[dict[str, Any]] = []

    async def subscribe(self, info: dict[str, Any] | None = None, **headers: str) -> int:
        info = dict(info or framework_info())
        body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if "id" in info:
            body["framework_id"] = info["id"]
        resp = await self.session.post(
            self.url,
            data=msgspec.json.encode(body),
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
            allow_redirects=False,
        )
        self.status = resp.status
        self.response = resp
        if resp.status != 200:
            await resp.read()
            return resp.status
        self.stream_id = resp.headers["Mesos-Stream-Id"]
        self._reader = asyncio.create_task(self._read(resp))
        first = await self.next_event()
        if first["type"] == "SUBSCRIBED":
            self.framework_id = first["subscribed"]["framework_id"]["value"]
        else:
            self._front.append(first)
        return 200

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    break
                data = await resp.content.readexactly(int(line))
                event = msgspec.json.decode(data)
                self.events_read += 1
                if event.get("type") == "HEARTBEAT":
                    self.heartbeats += 1
                    continue
                await self.events.put(event)
        except (aiohttp.ClientError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            await self.events.put(None)

    async def next_event(self, type_: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next event (of `type_`, skipping others); fails on timeout or end of stream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._front:
                event: dict[str, Any] | None = self._front.pop(0)
            else:
                try:
                    event = await asyncio.wait_for(
                        self.events.get(), max(deadline - loop.time(), 0.001)
                    )
                except asyncio.TimeoutError:  # not the builtin TimeoutError on 3.10
                    raise TimeoutError(f"no {type_ or 'event'} in {timeout}s") from None
            if event is None:
                raise EOFError("stream ended")
            if type_ is None or event["type"] == type_:
                return event

    async def update(self, state: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next UPDATE's status (with `state`, skipping other events)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next_event("UPDATE", max(deadline - loop.time(), 0.001))
            status = event["update"]["status"]
            if state is None or status["state"] == state:
                return status

    async def call(self, type_: str, payload: Any = None, **headers: str) -> tuple[int, str]:
        body: dict[str, Any] = {"type": type_, "framework_id": {"value": self.framework_id}}
        if payload is not None:
            body[type_.lower()] = payload
        hdrs = {"Content-Type": "application/json"}
        if self.stream_id:
            hdrs["Mesos-Stream-Id"] = self.stream_id
        hdrs.update(headers)
        async with self.session.post(
            self.url, data=msgspec.json.encode(body), headers=hdrs, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text()

    async def ack(self, status: dict[str, Any]) -> None:
        code, text = await self.call(
            "ACKNOWLEDGE",
            {"agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]},
        )
        assert code == 202, text

    async def launch(
        self,
        offer: dict[str, Any],
        task_id: str,
        cpus: float = 0.5,
        mem: float = 64.0,
        **extra: Any,
    ) -> tuple[int, str]:
        task = task_info(offer, task_id, cpus, mem, **extra)
        return await self.call(
            "ACCEPT",
            {
                "offer_ids": [offer["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
                "filters": {"refuse_seconds": 0},
            },
        )

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.response is not None:
            self.response.close()


def task_info(
    offer: dict[str, Any],
    task_id: str,
    cpus: float = 0.5,
    mem: float = 64.0,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    role = offer["allocation_info"]["role"]
    info: dict[str, Any] = {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": offer["agent_id"],
        "resources": [
            {
                "name": "cpus",
                "type": "SCALAR",
                "scalar": {"value": cpus},
                "role": "*",
                "allocation_info": {"role": role},
            },
            {
                "name": "mem",
                "type": "SCALAR",
                "scalar": {"value": mem},
                "role": "*",
                "allocation_info": {"role": role},
            },
        ],
        "command": {"value": "true", "shell": True},
    }
    if labels:
        info["labels"] = {"labels": [{"key": k, "value": v} for k, v in labels.items()]}
    if env:
        info["command"]["environment"] = {
            "variables": [{"name": k, "value": v} for k, v in env.items()]
        }
    return info
