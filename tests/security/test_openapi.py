"""``GET /openapi.json`` is valid OpenAPI 3.1 and true: every route of the app's router is
described, and every status code each operation documents is one it really answers (and the
other way round), provoked here one by one against the daemon running on the simulator; every
JSON answer among them is checked against the served document's schema. The schemas of what
the views answer and read are msgspec's own of the Structs they encode and decode into."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict
from securitykit import AUTH, running_daemon, token_file

from scale_scheduler.api import limits
from scale_scheduler.api.app import SCHEDULER_CORE, build_app
from scale_scheduler.api.auth import requires_token
from scale_scheduler.api.dashboard import DASHBOARD
from scale_scheduler.api.keys import CONFIG
from scale_scheduler.api.limits import MAX_CPUS
from scale_scheduler.api.openapi import ANSWERS, BODIES, build_document
from scale_scheduler.daemon.service.config import ApiConfig, Config
from scale_scheduler.state.domain import TaskState

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
BIG = b'{"is_paused": false, "pad": "' + b"x" * 2048 + b'"}'  # over max_body_bytes (1024)

UNPROVOKABLE = {
    # The dashboard's files are read at start-up, before the first request can arrive.
    ("GET", "/", "503"),
    ("GET", "/dashboard.css", "503"),
    ("GET", "/dashboard.js", "503"),
}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def documented_statuses(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (method, path, status)
        for (method, path), operation in operations(document).items()
        for status in operation["responses"]
    }


def resolve(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    ref = response.get("$ref")
    if ref is None:
        return response
    return document["components"]["responses"][ref.rsplit("/", 1)[1]]


def schema_errors(document: dict[str, Any], schema: dict[str, Any], body: Any) -> list[str]:
    """Where ``body`` breaks ``schema`` (a schema of ``document``, its ``$ref``s into the
    document's components), formats (date-time, uri) included."""
    import jsonschema_rs

    validator = jsonschema_rs.Draft202012Validator(
        {**schema, "components": document["components"]}, validate_formats=True
    )
    return [
        f"{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator.iter_errors(body)
    ]


API_CONFIGS = [
    pytest.param(ApiConfig(), id="open"),
    pytest.param(ApiConfig(token_file="token"), id="token"),
    pytest.param(ApiConfig(token_file="token", read_auth=True), id="token-reads-too"),
]


@pytest.mark.parametrize("api", API_CONFIGS)
def test_the_document_is_valid_openapi_3_1(api: ApiConfig) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    document = build_document(api)
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()


@pytest.mark.parametrize("api", API_CONFIGS)
def test_401_and_the_bearer_scheme_exactly_where_the_token_is_needed(api: ApiConfig) -> None:
    document = build_document(api)
    assert ("securitySchemes" in document["components"]) == bool(api.token_file)
    for (method, path), operation in operations(document).items():
        needed = requires_token(api, method, path)
        assert ("401" in operation["responses"]) == needed, (method, path)
        assert ("security" in operation) == needed, (method, path)
    if api.read_auth:
        assert not requires_token(api, "GET", "/")  # the page loads, then asks for the token
        assert requires_token(api, "GET", "/metrics")


def test_error_bodies_are_text_plain() -> None:
    document = build_document(ApiConfig(token_file="token"))
    for (method, path), operation in operations(document).items():
        for status, response in operation["responses"].items():
            content = resolve(document, response).get("content", {})
            if status.startswith(("4", "5")):
                assert list(content) == ["text/plain"], (method, path, status)


async def test_served_document_is_the_built_one(
    make_config: Callable[..., Config], aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(api={"token_file": str(token_file(tmp_path)), "read_auth": True})
    client = await aiohttp_client(build_app(config, connect_mesos=False))
    assert (await client.get("/openapi.json")).status == 401
    response = await client.get("/openapi.json", headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == build_document(config.api)


def test_every_route_is_described_and_nothing_else(make_config: Callable[..., Config]) -> None:
    config = make_config()
    routes = {
        (route.method, route.resource.canonical)
        for route in build_app(config).router.routes()
        if route.resource is not None and route.method != "HEAD"  # HEAD comes with every GET
    }
    documented = set(operations(build_document(config.api)))
    assert routes <= documented, f"undocumented routes: {sorted(routes - documented)}"
    # The rest are the paths without their trailing slash (308 to the real path), and all of them.
    aliases = documented - routes
    assert {(method, path + "/") for method, path in aliases} <= routes
    slashed = {(method, path) for method, path in routes if path.endswith("/") and path != "/"}
    assert aliases == {(method, path.rstrip("/")) for method, path in slashed}


# --- every documented status, provoked ------------------------------------------------------


class Prober:
    """Sends requests to a running daemon; checks each answer against the document and records
    (method, path template, status)."""

    def __init__(self, session: aiohttp.ClientSession, document: dict[str, Any]) -> None:
        self.session = session
        self.document = document
        self.operations = operations(document)
        self.seen: set[tuple[str, str, str]] = set()
        self.answers: set[str] = set()
        """The schemas (as JSON) that real answers were checked against."""
        self.url = ""

    async def expect(
        self,
        status: int,
        method: str,
        template: str,
        *,
        auth: bool = True,
        body: Any = None,
        raw: bytes | AsyncIterator[bytes] | None = None,
        query: str = "",
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        **params: Any,
    ) -> aiohttp.ClientResponse:
        path = template.format(**params)
        sent: CIMultiDict[str] = CIMultiDict(AUTH if auth else {})
        sent.extend(headers or {})
        if raw is not None:
            sent["Content-Type"] = content_type
        async with self.session.request(
            method,
            self.url + path + query,
            json=body,
            data=raw,
            headers=sent,
            allow_redirects=False,
        ) as response:
            body = b""
            if response.content_type != "text/event-stream":  # endless: headers are enough
                body = await response.read()
        label = f"{method} {path}{query}"
        assert response.status == status, f"{label} answered {response.status}"
        responses = self.operations[(method, template)]["responses"]
        assert str(status) in responses, f"{label}: {status} is not documented"
        documented = resolve(self.document, responses[str(status)])
        if "content" in documented:
            assert response.content_type in documented["content"], (label, response.content_type)
            if response.content_type == "application/json":
                schema = documented["content"]["application/json"]["schema"]
                errors = schema_errors(self.document, schema, msgspec.json.decode(body))
                assert not errors, (label, errors)
                self.answers.add(msgspec.json.encode(schema).decode())
        for name, header in documented.get("headers", {}).items():
            if header.get("required"):
                assert name in response.headers, (label, name)
        self.seen.add((method, template, str(status)))
        return response


async def _submit(prober: Prober, task: dict[str, Any]) -> int:
    response = await prober.expect(201, "POST", "/queue/", body=task)
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


async def _stalled_body() -> AsyncIterator[bytes]:
    """A body that starts and never ends (``api.body_timeout`` answers it)."""
    yield b'{"is_paused": '
    await asyncio.Event().wait()


async def _provoke_the_stream_limit(prober: Prober, daemon: Any) -> None:
    """503 over ``api.max_event_streams`` (1 here): one stream held, a second refused."""
    hub = daemon.app[DASHBOARD]
    async with prober.session.get(prober.url + "/dashboard/events/", headers=AUTH) as held:
        assert held.status == 200
        await prober.expect(503, "GET", "/dashboard/events/")
    await daemon.sim.wait_until(lambda: hub.watchers == 0, timeout=10)  # its next write fails


async def _provoke_every_status(prober: Prober, daemon: Any, db_path: str) -> None:
    await _provoke_the_stream_limit(prober, daemon)
    core = daemon.app[SCHEDULER_CORE]
    task = {"name": "t", "command": "true", "cpus": 0.1, "mem": 8}
    running = await _submit(prober, {**task, "labels": {"sim.duration": "600"}})
    finished = await _submit(prober, task)
    queued = await _submit(prober, {**task, "cpus": MAX_CPUS})  # fits no agent
    await prober.expect(201, "POST", "/queue/", body=[task, task])
    await daemon.sim.wait_until(
        lambda: (
            finished not in core.board.tasks
            and running in core.board.tasks
            and core.board.tasks[running].state is TaskState.RUNNING
            and core.nodes.by_id
        ),
        timeout=10,
    )
    node = min(core.nodes.by_id)

    await prober.expect(200, "GET", "/scheduler/")
    await prober.expect(201, "PATCH", "/scheduler/", body={"is_paused": False})
    await prober.expect(400, "PATCH", "/scheduler/", body={})
    await prober.expect(200, "GET", "/status/")
    await prober.expect(200, "GET", "/leader/")
    await prober.expect(200, "GET", "/usage/")
    await prober.expect(200, "GET", "/queue/")
    await prober.expect(400, "GET", "/queue/", query="?page=0")
    await prober.expect(400, "POST", "/queue/", body={"name": "no resources"})
    await prober.expect(200, "GET", "/tasks/", query="?state=running")
    await prober.expect(400, "GET", "/tasks/", query="?state=sleeping")
    await prober.expect(200, "GET", "/tasks/{task_id}/", task_id=running)
    await prober.expect(404, "GET", "/tasks/{task_id}/", task_id=10**6)
    await prober.expect(200, "DELETE", "/tasks/{task_id}/", task_id=queued)
    await prober.expect(202, "DELETE", "/tasks/{task_id}/", task_id=running)
    await prober.expect(409, "DELETE", "/tasks/{task_id}/", task_id=finished)
    await prober.expect(404, "DELETE", "/tasks/{task_id}/", task_id=10**6)
    await prober.expect(200, "GET", "/nodes/", query="?hostname=sim-agent-0")
    await prober.expect(400, "GET", "/nodes/", query="?page_size=0")
    await prober.expect(200, "GET", "/nodes/{node_id}/", node_id=node)
    await prober.expect(404, "GET", "/nodes/{node_id}/", node_id=10**6)
    await prober.expect(200, "PATCH", "/nodes/{node_id}/", node_id=node, body={"is_paused": False})
    await prober.expect(400, "PATCH", "/nodes/{node_id}/", node_id=node, body={"x": 1})
    await prober.expect(404, "PATCH", "/nodes/{node_id}/", node_id=10**6, body={"is_active": True})
    await prober.expect(200, "GET", "/healthz")
    await prober.expect(200, "GET", "/readyz")
    await prober.expect(200, "GET", "/metrics")
    for asset in ("/", "/dashboard.css", "/dashboard.js"):
        etag = (await prober.expect(200, "GET", asset)).headers["ETag"]
        await prober.expect(304, "GET", asset, headers={"If-None-Match": etag})
    await prober.expect(200, "GET", "/dashboard/state/")
    await prober.expect(200, "GET", "/dashboard/events/")
    await prober.expect(200, "GET", "/openapi.json")

    for (method, template), operation in prober.operations.items():
        params = {"task_id": running, "node_id": node}
        body = {"is_paused": False} if method == "PATCH" else None
        if "requestBody" in operation:
            await prober.expect(413, method, template, raw=BIG, **params)
            await prober.expect(408, method, template, raw=_stalled_body(), **params)
        if "401" in operation["responses"]:
            await prober.expect(401, method, template, auth=False, body=body, **params)
        await prober.expect(
            421, method, template, body=body, headers={"Host": "evil.example"}, **params
        )
        two = [("Authorization", AUTH["Authorization"]), ("Authorization", "Bearer other")]
        await prober.expect(400, method, template, auth=False, body=body, headers=two, **params)
        if "403" in operation["responses"]:
            evil = {"Origin": "http://evil.example"}
            await prober.expect(403, method, template, body=body, headers=evil, **params)
        if "415" in operation["responses"]:
            raw = b'{"is_paused": false}'
            await prober.expect(415, method, template, raw=raw, content_type="text/plain", **params)
        if "308" in operation["responses"]:
            response = await prober.expect(308, method, template, **params)
            assert response.headers["Location"] == template.format(**params) + "/"
            if "{" in template:  # not an id: no redirect, and no such path
                await prober.expect(404, method, template, task_id="x", node_id="x")

    def delete_the_scheduler_row() -> None:
        with sqlite3.connect(db_path) as connection:
            connection.execute("DELETE FROM scheduler")

    # Off the loop: the daemon's writer may be inside a transaction that needs the loop to end;
    # a blocking write here would wait for its lock until sqlite3's timeout.
    await asyncio.to_thread(delete_the_scheduler_row)
    await prober.expect(500, "GET", "/scheduler/")
    await prober.expect(500, "PATCH", "/scheduler/", body={"is_paused": True})


async def test_every_documented_status_is_answered_and_every_answer_documented(
    tmp_path: Path,
) -> None:
    pytest.importorskip("jsonschema_rs")
    sections: dict[str, Any] = {
        "api": {
            "token_file": str(token_file(tmp_path)),
            "max_body_bytes": 1024,
            "body_timeout": 1.0,
            "max_event_streams": 1,
        }
    }
    async with (
        running_daemon(tmp_path, agents=2, **sections) as daemon,
        aiohttp.ClientSession() as session,
    ):
        document = build_document(daemon.app[CONFIG].api)
        prober = Prober(session, document)
        prober.url = daemon.url
        await _provoke_every_status(prober, daemon, str(tmp_path / "state.db"))
        # Not ready: the same API with no Mesos master to subscribe to.
        app = build_app(daemon.app[CONFIG], connect_mesos=False)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            prober.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            await prober.expect(503, "GET", "/readyz")
        finally:
            await runner.cleanup()
    missing = documented_statuses(document) - UNPROVOKABLE - prober.seen
    assert not missing, f"documented but never answered: {sorted(missing)}"
    json_schemas = {  # every JSON answer the document describes was checked
        msgspec.json.encode(resolve(document, response)["content"]["application/json"]["schema"])
        for operation in operations(document).values()
        for response in operation["responses"].values()
        if "application/json" in resolve(document, response).get("content", {})
    }
    assert {schema.encode() for schema in prober.answers} == json_schemas


async def test_other_methods_answer_405_with_the_documented_ones(
    make_config: Callable[..., Config], aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(api={"token_file": str(token_file(tmp_path))})
    client = await aiohttp_client(build_app(config, connect_mesos=False))
    document = build_document(config.api)
    assert "MethodNotAllowed" in document["components"]["responses"]
    for path, item in document["paths"].items():
        if path + "/" in document["paths"]:
            continue  # a redirecting alias: a method its real path lacks finds no route (404)
        allowed = {method.upper() for method in item if method in METHODS}
        if "GET" in allowed:
            allowed.add("HEAD")
        url = path.format(task_id=1, node_id=1)
        response = await client.put(url, headers=AUTH, data=b"{}")
        assert response.status == 405, url
        assert response.content_type == "text/plain"
        assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed, url


# --- the schemas are the Structs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("struct", "name"), [*ANSWERS.items(), *BODIES.items()], ids=lambda value: str(value)
)
def test_each_schema_is_its_structs(struct: type[msgspec.Struct], name: str) -> None:
    """Field for field what msgspec says of the Struct: a field added, renamed or bounded in
    the code is so in the document."""
    schema = build_document(ApiConfig())["components"]["schemas"][name]
    _, generated = msgspec.json.schema_components([struct])
    own = generated[struct.__name__]
    assert list(schema["properties"]) == list(own["properties"])
    assert schema["additionalProperties"] is False
    assert schema["required"] == own.get("required", [])
    for field, property_schema in own["properties"].items():
        if "$ref" not in str(property_schema):  # refs differ only by the components' names
            assert schema["properties"][field] == property_schema, field


def _structs_within(info: msgspec.inspect.Type) -> list[msgspec.inspect.StructType]:
    if isinstance(info, msgspec.inspect.StructType):
        return [info] + [s for f in info.fields for s in _structs_within(f.type)]
    inner: list[msgspec.inspect.Type] = []
    if isinstance(info, msgspec.inspect.UnionType):
        inner = list(info.types)
    elif isinstance(info, msgspec.inspect.Metadata):
        inner = [info.type]
    elif isinstance(info, msgspec.inspect.ListType):
        inner = [info.item_type]
    elif isinstance(info, msgspec.inspect.DictType):
        inner = [info.key_type, info.value_type]
    return [s for item in inner for s in _structs_within(item)]


@pytest.mark.parametrize("struct", list(ANSWERS), ids=lambda struct: struct.__name__)
def test_an_answer_has_every_field_its_schema_requires(struct: type[msgspec.Struct]) -> None:
    """msgspec writes every field but an ``UNSET`` one, and its schema requires every field
    without a default: an answer Struct (and each Struct in it) with a default other than
    ``UNSET`` would be documented as sometimes missing a field it always has."""
    for info in _structs_within(msgspec.inspect.type_info(struct)):
        assert not info.cls.__struct_config__.omit_defaults, info.cls
        for field in msgspec.structs.fields(info.cls):
            assert field.required or field.default is msgspec.UNSET, (info.cls, field.name)


def test_the_character_rules_and_bounds_are_in_the_body_schemas() -> None:
    """What ``task_body`` and ``views_nodes`` check outside msgspec, the schema states exactly
    (the fuzzer generates from these patterns, and the API must agree with it)."""
    schemas = build_document(ApiConfig())["components"]["schemas"]
    task_schema = schemas["TaskSubmission"]
    task = task_schema["properties"]
    assert task["name"]["pattern"] == limits.PRINTABLE
    assert task["name"]["maxLength"] == limits.MAX_NAME
    assert task["command"]["anyOf"][0]["pattern"] == limits.NO_NUL
    assert schemas["ContainerIn"]["properties"]["image"]["pattern"] == limits.IMAGE
    assert task["env"]["propertyNames"]["pattern"] == limits.ENV_NAME
    assert task["env"]["additionalProperties"]["pattern"] == limits.NO_NUL
    listed, shorthand = task["constraints"]["anyOf"]
    for mapping in (task["labels"], shorthand):
        assert mapping["propertyNames"]["pattern"] == limits.NO_NUL
        assert mapping["maxProperties"] == limits.MAX_ENTRIES
    assert listed["maxItems"] == limits.MAX_ENTRIES
    assert listed["items"]["items"]["pattern"] == limits.NO_NUL
    forms = task_schema["allOf"][0]["properties"]["constraints"]["items"]["oneOf"]
    assert len(forms) == 7  # one per operator
    for form in forms:
        assert (form["minItems"], form["maxItems"]) in ((2, 2), (2, 3), (3, 3))
        for part in form["prefixItems"][:1] + form["prefixItems"][2:]:
            assert part["pattern"] in (limits.NO_NUL, "^[0-9]*[1-9][0-9]*$")  # n: digits only
    assert task["group"]["anyOf"][0]["pattern"] == limits.PRINTABLE
    assert task["cpus"]["minimum"] == limits.MIN_CPUS
    assert task["cpus"]["maximum"] == limits.MAX_CPUS
    reason = schemas["NodeUpdate"]["properties"]["pause_reason"]["anyOf"][0]
    assert reason == {
        "type": "string",
        "maxLength": limits.MAX_PAUSE_REASON,
        "pattern": limits.PRINTABLE,
    }
    assert schemas["NodeUpdate"]["minProperties"] == 1
    assert schemas["SchedulerUpdate"]["minProperties"] == 1


def test_the_answer_check_refuses_what_the_schemas_do_not_allow() -> None:
    pytest.importorskip("jsonschema_rs")
    document = build_document(ApiConfig())
    node = {
        "id": 1,
        "hostname": "a",
        "agent_id": None,
        "is_paused": False,
        "pause_reason": None,
        "is_active": True,
        "state": "READY",
        "resources": {
            "total": None,
            "scheduled": dict.fromkeys(("cpus", "mem", "disk", "gpus"), 0),
            "used": None,
        },
        "running_tasks": 0,
        "last_offer": None,
        "created": "2026-01-02T03:04:05.678Z",
        "last_modified": None,
    }
    schema = {"$ref": "#/components/schemas/Node"}
    assert schema_errors(document, schema, node) == []
    for wrong in (
        {"extra": 1},
        {"state": "ASLEEP"},
        {"id": 0},
        {"created": "yesterday"},
        {"resources": {"total": None, "scheduled": {"cpus": -1}}},
    ):
        assert schema_errors(document, schema, {**node, **wrong}), wrong
    del node["last_offer"]
    assert schema_errors(document, schema, node)
