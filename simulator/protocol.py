"""Wire shapes of the Mesos v1 scheduler and operator APIs, as the simulated master emits them.

Owns the JSON builders (events, TaskStatus, MasterInfo), task-state sets, RecordIO framing and
the fast encoder. It holds no state and makes no decisions: the master and agent pool call it.
Field names follow `include/mesos/v1/scheduler/scheduler.proto` and `include/mesos/v1/mesos.proto`.
"""

from __future__ import annotations

import base64
import socket
from typing import Any

import msgspec

MESOS_VERSION = "1.11.0"
SCHEDULER_PATH = "/api/v1/scheduler"
OPERATOR_PATH = "/api/v1"

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
# States only PARTITION_AWARE frameworks may see; everyone else is told TASK_LOST.
PARTITION_AWARE_STATES = frozenset(
    {"TASK_DROPPED", "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"}
)


def value_of(obj: Any, key: str) -> str | None:
    """`obj[key]["value"]` (an id message such as FrameworkID) when it is a non-empty string."""
    inner = obj.get(key) if isinstance(obj, dict) else None
    value = inner.get("value") if isinstance(inner, dict) else None
    return value if isinstance(value, str) and value else None


def duration_seconds(duration: Any) -> float | None:
    """A ``DurationInfo`` (``{"nanoseconds": n}``, n an int64 as a number or a string) in
    seconds; None when it is not one."""
    nanos = duration.get("nanoseconds") if isinstance(duration, dict) else None
    if isinstance(nanos, str) and nanos.lstrip("-").isdigit() and nanos.isascii():
        nanos = int(nanos)
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        return None
    return nanos / 1e9


def grace_period(kill_policy: Any) -> float | None:
    """``KillPolicy.grace_period`` in seconds, when the policy sets a valid one."""
    if not isinstance(kill_policy, dict):
        return None
    grace = duration_seconds(kill_policy.get("grace_period"))
    return grace if grace is not None and grace >= 0 else None


SCHEDULER_CALL_TYPES = frozenset(
    {
        "SUBSCRIBE",
        "TEARDOWN",
        "ACCEPT",
        "DECLINE",
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "REVIVE",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE",
        "RECONCILE_OPERATIONS",
        "MESSAGE",
        "REQUEST",
        "SUPPRESS",
        "UPDATE_FRAMEWORK",
    }
)

_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def record(payload: bytes) -> bytes:
    """Frame one RecordIO record: decimal length, newline, payload."""
    return b"%d\n%s" % (len(payload), payload)


def encode_event(event: dict[str, Any]) -> bytes:
    return record(encode(event))


HEARTBEAT_RECORD = encode_event({"type": "HEARTBEAT"})


def state_for(state: str, partition_aware: bool) -> str:
    """The state a framework is told, given whether it is PARTITION_AWARE."""
    if not partition_aware and state in PARTITION_AWARE_STATES:
        return "TASK_LOST"
    return state


def new_uuid(raw: bytes) -> str:
    """Base64 of 16 bytes, as `TaskStatus.uuid` travels in JSON."""
    return base64.b64encode(raw).decode("ascii")


def ip_as_uint32(ip: str) -> int:
    """MasterInfo.ip: the IPv4 address in network byte order, read as a host integer."""
    return int.from_bytes(socket.inet_aton(ip), "little")


def master_info(master_id: str, host: str, port: int) -> dict[str, Any]:
    return {
        "id": master_id,
        "ip": ip_as_uint32(host),
        "port": port,
        "pid": f"master@{host}:{port}",
        "hostname": host,
        "version": MESOS_VERSION,
        "address": {"hostname": host, "ip": host, "port": port},
    }


def task_status(
    task_id: str,
    state: str,
    *,
    agent_id: str | None,
    source: str,
    timestamp: float,
    reason: str | None = None,
    message: str | None = None,
    uuid: str | None = None,
    executor_id: str | None = None,
    container_id: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "task_id": {"value": task_id},
        "state": state,
        "source": source,
        "timestamp": timestamp,
    }
    if agent_id is not None:
        status["agent_id"] = {"value": agent_id}
    if executor_id is not None:
        status["executor_id"] = {"value": executor_id}
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if uuid is not None:
        status["uuid"] = uuid
    if container_id is not None:
        # The agent adds the executor's container to every update it forwards.
        status["container_status"] = {"container_id": {"value": container_id}}
    return status


def subscribed_event(
    framework_id: str, heartbeat_interval: float, info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": framework_id},
            "heartbeat_interval_seconds": heartbeat_interval,
            "master_info": info,
        },
    }


def update_event(status: dict[str, Any]) -> dict[str, Any]:
    return {"type": "UPDATE", "update": {"status": status}}


def rescind_event(offer_id: str) -> dict[str, Any]:
    return {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}}


def failure_event(agent_id: str) -> dict[str, Any]:
    return {"type": "FAILURE", "failure": {"agent_id": {"value": agent_id}}}


def error_event(message: str) -> dict[str, Any]:
    return {"type": "ERROR", "error": {"message": message}}


def offers_event(offers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "OFFERS", "offers": {"offers": offers}}


def time_info(seconds: float) -> dict[str, int]:
    return {"nanoseconds": int(seconds * 1e9)}
