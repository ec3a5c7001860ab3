"""HTTP face of one simulated master: scheduler API, operator API and the `/sim` admin API.

Owns `build_app(master)` and the views. Views deal with transport the way Mesos's
`src/master/http.cpp` does (auth 401, leader 307/503, content type 400/415, JSON 400, accept
406, framework and stream id 400/403) with text/plain error bodies, then hand the decoded call
to the `Master`. The SUBSCRIBE view keeps the request open and pumps the subscriber's stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import msgspec
import structlog
from aiohttp import web

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.faults import apply_async_fault
from scale_scheduler.simulator.master import CallError, Master

log = structlog.get_logger(__name__)

MASTER_KEY = web.AppKey("master", Master)
_JSON = "application/json"


def build_app(master: Master) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MASTER_KEY] = master
    app.router.add_post(protocol.SCHEDULER_PATH, scheduler_view)
    app.router.add_post(protocol.OPERATOR_PATH, operator_view)
    app.router.add_get("/version", version_view)
    app.router.add_get("/health", health_view)
    app.router.add_get("/sim/state", sim_state_view)
    app.router.add_get("/sim/record", sim_record_view)
    app.router.add_post("/sim/fault", sim_fault_view)
    return app


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain", headers=headers)


def _check_auth(request: web.Request, master: Master) -> tuple[web.Response | None, str | None]:
    return check_basic_auth(request, dict(master.config.credentials))


def check_basic_auth(
    request: web.Request, creds: dict[str, str]
) -> tuple[web.Response | None, str | None]:
    """Basic auth as Mesos does it when credentials are configured; returns (error, principal)."""
    if not creds:
        return None, None
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            principal, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            principal, secret = "", ""
        if principal in creds and creds[principal] == secret:
            return None, principal
    return _text(401, "", **{"WWW-Authenticate": 'Basic realm="mesos"'}), None


def _leader_check(master: Master, path: str) -> web.Response | None:
    if master.leading:
        return None
    leader = master.leader_info
    if leader is None:
        return _text(503, "No leader elected")
    address = leader.get("address") or {}
    host = address.get("hostname") or address.get("ip") or leader.get("hostname")
    port = address.get("port") or leader.get("port")
    return web.Response(status=307, headers={"Location": f"//{host}:{port}{path}"})


async def _decode(request: web.Request) -> dict[str, Any] | web.Response:
    ctype = request.headers.get("Content-Type")
    if ctype is None:
        return _text(400, "Expecting 'Content-Type' to be present")
    if request.content_type != _JSON:
        return _text(415, "Expecting 'Content-Type' of application/json or application/x-protobuf")
    body = await request.read()
    try:
        call = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return _text(400, f"Failed to parse body into JSON: {exc}")
    if not isinstance(call, dict):
        return _text(400, "Failed to convert JSON into Call protobuf: not an object")
    return call


async def scheduler_view(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER_KEY]
    denied, principal = _check_auth(request, master)
    if denied is not None:
        return denied
    redirect = _leader_check(master, protocol.SCHEDULER_PATH)
    if redirect is not None:
        return redirect
    call = await _decode(request)
    if isinstance(call, web.StreamResponse):
        return call
    call_type = call.get("type")
    if call_type not in protocol.SCHEDULER_CALL_TYPES:
        return _text(
            400, f"Failed to convert JSON into Call protobuf: unknown call type {call_type!r}"
        )
    assert isinstance(call_type, str)
    cluster = master.cluster
    cluster.record.calls[call_type] += 1
    delay, failure = cluster.faults.take(call_type)
    if delay > 0:
        await asyncio.sleep(delay)
    if failure is not None and failure.status is not None:
        return _text(failure.status, failure.message)
    if not master.leading:  # lost leadership while the call was delayed
        redirect = _leader_check(master, protocol.SCHEDULER_PATH)
        assert redirect is not None
        return redirect
    if call_type == "SUBSCRIBE":
        return await _subscribe(request, master, call, principal)
    try:
        fw = master.framework_for_call(call, request.headers.get("Mesos-Stream-Id"))
        status = master.handle_call(fw, call_type, call)
    except CallError as exc:
        return _text(exc.status, exc.message)
    return web.Response(status=status)


async def _subscribe(
    request: web.Request, master: Master, call: dict[str, Any], principal: str | None
) -> web.StreamResponse:
    accept = request.headers.get("Accept", "*/*")
    if not any(a in accept for a in (_JSON, "application/*", "*/*")):
        return _text(406, "Expecting 'Accept' to allow application/json or application/x-protobuf")
    sub_body = call.get("subscribe")
    info = sub_body.get("framework_info") if isinstance(sub_body, dict) else None
    if not isinstance(info, dict):
        return _text(400, "Failed to validate scheduler::Call: Expecting 'subscribe' to be present")
    for key in ("user", "name"):
        if not isinstance(info.get(key), str):
            return _text(
                400,
                "Failed to convert JSON into Call protobuf: Missing required fields: "
                f"subscribe.framework_info.{key}",
            )
    if protocol.value_of(call, "framework_id") != protocol.value_of(info, "id"):
        return _text(
            400,
            "Failed to validate scheduler::Call: 'framework_id' differs from "
            "'subscribe.framework_info.id'",
        )
    if principal is not None and info.get("principal") != principal:
        return _text(
            403,
            f"Authenticated principal '{principal}' does not match principal "
            f"'{info.get('principal', '')}' set in `FrameworkInfo`",
        )
    assert isinstance(sub_body, dict)  # framework_info was read from it above
    suppressed = [r for r in sub_body.get("suppressed_roles") or [] if isinstance(r, str)]
    master.cluster.record.framework_infos.append(info)
    sub = master.subscribe(info, suppressed)
    resp = web.StreamResponse(
        status=200, headers={"Content-Type": _JSON, "Mesos-Stream-Id": sub.stream_id}
    )
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        await sub.pump(resp)
        if sub.aborted:
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write_eof()
    except (ConnectionError, RuntimeError) as exc:
        log.info("sim_stream_dropped", framework_id=sub.framework_id, error=str(exc))
    finally:
        sub.close()
        master.stream_ended(sub)
        master.cluster.record.subscription_ended(sub.stream_id, master.timers.now())
    return resp


async def operator_view(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER_KEY]
    denied, _ = _check_auth(request, master)
    if denied is not None:
        return denied
    call = await _decode(request)
    if isinstance(call, web.StreamResponse):
        return call
    call_type = call.get("type")
    if call_type == "GET_HEALTH":
        return web.json_response({"type": "GET_HEALTH", "get_health": {"healthy": True}})
    if call_type == "GET_VERSION":
        return web.json_response(
            {"type": "GET_VERSION", "get_version": {"version_info": _version()}}
        )
    redirect = _leader_check(master, protocol.OPERATOR_PATH)
    if redirect is not None:
        return redirect
    handlers = {
        "GET_AGENTS": master.get_agents,
        "GET_TASKS": master.get_tasks,
        "GET_FRAMEWORKS": master.get_frameworks,
        "GET_MASTER": master.get_master,
    }
    if call_type == "GET_STATE":
        payload: dict[str, Any] = {
            "get_tasks": master.get_tasks(),
            "get_executors": {"executors": [], "orphan_executors": []},
            "get_frameworks": master.get_frameworks(),
            "get_agents": master.get_agents(),
        }
    elif isinstance(call_type, str) and call_type in handlers:
        payload = handlers[call_type]()
    else:
        return _text(400, f"Failed to validate master::Call: unsupported type {call_type!r}")
    body = protocol.encode({"type": call_type, call_type.lower(): payload})
    return web.Response(body=body, content_type=_JSON)


def _version() -> dict[str, str]:
    return {"version": protocol.MESOS_VERSION, "build_user": "scale-scheduler-sim"}


async def version_view(request: web.Request) -> web.Response:
    return web.json_response(_version())


async def health_view(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def sim_state_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[MASTER_KEY].cluster.state())


async def sim_record_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[MASTER_KEY].cluster.record.to_json())


async def sim_fault_view(request: web.Request) -> web.Response:
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        return _text(400, f"invalid JSON: {exc}")
    if not isinstance(body, dict):
        return _text(400, "expected a JSON object")
    try:
        result = await apply_async_fault(request.app[MASTER_KEY].cluster, body)
    except (ValueError, TypeError, binascii.Error) as exc:
        return _text(400, str(exc))
    return web.json_response(result)
