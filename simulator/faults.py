"""Fault injection for the simulated cluster: call delays/failures and raw stream payloads.

Owns `CallFaults` (rules consulted by the HTTP layer before a scheduler call is applied), the
catalogue of raw byte payloads (`RAW_KINDS`, `raw_payload`) used to test a client's RecordIO
reader, and `apply_fault`, the JSON dispatcher behind `POST /sim/fault` and the `fault`
subcommand. The faults act through the cluster's methods, as `FaultTarget` names them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.agents import Agent
from scale_scheduler.simulator.config import AgentSpec

RAW_KINDS = (
    "bad_length",
    "invalid_json",
    "unknown_event",
    "oversize",
    "oversize_header",
    "unknown_resource_offer",
)
DEFAULT_OVERSIZE = 8 * 1024 * 1024


@dataclass(slots=True)
class CallRule:
    call_type: str | None  # None matches every call type
    delay: float = 0.0
    status: int | None = None
    message: str = "Simulated failure"
    remaining: int | None = None  # None: forever


class CallFaults:
    """Delay or fail scheduler calls, optionally only of one type and only N times."""

    def __init__(self) -> None:
        self.rules: list[CallRule] = []

    def add(self, rule: CallRule) -> None:
        self.rules.append(rule)

    def clear(self) -> None:
        self.rules.clear()

    def take(self, call_type: str) -> tuple[float, CallRule | None]:
        """Consume the rules matching a call: total delay, and the failure to answer if any."""
        delay = 0.0
        failure: CallRule | None = None
        for rule in self.rules:
            if rule.call_type is not None and rule.call_type != call_type:
                continue
            if rule.status is not None:
                if failure is not None:
                    continue
                failure = rule
            else:
                delay += rule.delay
            if rule.remaining is not None:
                rule.remaining -= 1
        self.rules = [r for r in self.rules if r.remaining is None or r.remaining > 0]
        return delay, failure


def raw_payload(kind: str, size: int | None = None) -> bytes:
    """Bytes that break a client's stream reader in one named way (see `RAW_KINDS`)."""
    if kind == "bad_length":
        return b"12x\n{}"
    if kind == "invalid_json":
        return protocol.record(b'{"type": "HEARTBEAT",')
    if kind == "unknown_event":
        return protocol.encode_event({"type": "SIM_UNKNOWN", "sim_unknown": {"note": "test"}})
    if kind == "oversize":
        pad = b"x" * (size if size is not None else DEFAULT_OVERSIZE)
        return protocol.record(b'{"type":"HEARTBEAT","padding":"' + pad + b'"}')
    if kind == "oversize_header":
        return b"%d\n" % (size if size is not None else 1 << 40)
    raise ValueError(f"unknown raw payload kind {kind!r}; known: {', '.join(RAW_KINDS)}")


UNKNOWN_RESOURCES: list[dict[str, Any]] = [
    {"name": "fpgas", "type": "SCALAR", "scalar": {"value": 2.0}, "role": "*"},
    {"name": "licenses", "type": "SET", "set": {"item": ["a", "b"]}, "role": "*"},
]


class FaultTarget(Protocol):
    """What a fault acts on: the simulated cluster (`cluster.SimulatedCluster` is one)."""

    def stop_heartbeats(self, framework_id: str | None = None) -> int: ...
    def resume_heartbeats(self, framework_id: str | None = None) -> int: ...
    def close_stream(self, framework_id: str | None = None, abort: bool = False) -> int: ...
    def hang_stream(self, framework_id: str | None = None, hung: bool = True) -> int: ...
    def delay_calls(
        self, seconds: float, call_type: str | None = None, count: int | None = None
    ) -> None: ...
    def fail_calls(
        self,
        status: int = 500,
        call_type: str | None = None,
        count: int | None = None,
        message: str = "Simulated failure",
    ) -> None: ...
    def clear_call_faults(self) -> None: ...
    def rescind_offers(self, framework_id: str | None = None) -> int: ...
    def remove_agent(self, agent: str) -> bool: ...
    def mark_agent_gone(self, agent: str) -> int: ...
    def add_agent(self, spec: AgentSpec | None = None, **overrides: Any) -> Agent: ...
    def set_agent_http(self, agent: str, mode: str) -> bool: ...
    def inject_raw(self, data: bytes, framework_id: str | None = None) -> int: ...
    def inject(
        self, kind: str, framework_id: str | None = None, size: int | None = None
    ) -> int: ...
    async def step_down(self, rejoin: bool = True) -> int | None: ...
    async def rejoin(self) -> list[int]: ...


def apply_fault(cluster: FaultTarget, body: dict[str, Any]) -> dict[str, Any]:
    """Run one fault described as JSON (`{"action": ..., ...}`); returns a JSON result."""
    action = body.get("action")
    fid = body.get("framework_id")
    if action == "stop_heartbeats":
        return {"streams": cluster.stop_heartbeats(fid)}
    if action == "resume_heartbeats":
        return {"streams": cluster.resume_heartbeats(fid)}
    if action == "close_stream":
        return {"streams": cluster.close_stream(fid, abort=bool(body.get("abort", False)))}
    if action == "hang_stream":
        return {"streams": cluster.hang_stream(fid)}
    if action == "unhang_stream":
        return {"streams": cluster.hang_stream(fid, hung=False)}
    if action == "delay_calls":
        cluster.delay_calls(
            float(body.get("seconds", 1.0)), body.get("call_type"), body.get("count")
        )
        return {}
    if action == "fail_calls":
        cluster.fail_calls(
            int(body.get("status", 500)),
            body.get("call_type"),
            body.get("count"),
            str(body.get("message", "Simulated failure")),
        )
        return {}
    if action == "clear_call_faults":
        cluster.clear_call_faults()
        return {}
    if action == "rescind_offers":
        return {"rescinded": cluster.rescind_offers(fid)}
    if action == "remove_agent":
        return {"removed": cluster.remove_agent(str(body.get("agent")))}
    if action == "mark_agent_gone":
        return {"tasks": cluster.mark_agent_gone(str(body.get("agent")))}
    if action == "agent_http":
        return {"changed": cluster.set_agent_http(str(body.get("agent")), str(body.get("mode")))}
    if action == "add_agent":
        agent = cluster.add_agent(
            **{k: body[k] for k in ("cpus", "mem", "disk", "gpus") if k in body}
        )
        return {"agent_id": agent.id, "hostname": agent.hostname}
    if action == "inject":
        kind = body.get("kind")
        if "raw_base64" in body:
            data = base64.b64decode(body["raw_base64"])
            return {"streams": cluster.inject_raw(data, fid)}
        return {"streams": cluster.inject(str(kind), fid, size=body.get("size"))}
    raise ValueError(f"unknown fault action {action!r}")


ASYNC_ACTIONS = ("step_down", "rejoin")


async def apply_async_fault(cluster: FaultTarget, body: dict[str, Any]) -> dict[str, Any]:
    """Faults that need awaiting (leadership changes); everything else via `apply_fault`."""
    action = body.get("action")
    if action == "step_down":
        old = await cluster.step_down(rejoin=bool(body.get("rejoin", True)))
        return {"stepped_down": old}
    if action == "rejoin":
        return {"rejoined": await cluster.rejoin()}
    return apply_fault(cluster, body)
