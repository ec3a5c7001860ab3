"""The OpenAPI 3.1 description of the REST API, served at ``GET /openapi.json``.

Built from code where code is the truth: the schemas of what the views answer (``ANSWERS``) and
read (``BODIES``) are msgspec's own of the Structs they encode and decode into, bounds, character
rules and state enums included; the page limits come from ``pagination``. What is written here
by hand is small: the page envelopes, the dashboard's snapshot, and the rules msgspec cannot
state (a task's command or image, an update's one field at least).

The document follows the running configuration: with ``api.token_file`` set it declares the
bearer scheme and the 401 of every operation that needs the token (``auth``).
It also describes what every view shares: errors as ``text/plain``, 308 from a path without its
trailing slash (``normalize_path_middleware``), 413 over ``api.max_body_bytes``, 405 with
``Allow`` for a method a path does not serve (``components.responses.MethodNotAllowed``), and
what ``request_guard`` and ``auth`` answer before any view: 421 for a foreign ``Host``, 403 and
415 for a cross-origin or non-JSON change, 400 for two ``Authorization`` headers.

Every route is here: the spec's API, ``/queue/``, ``/tasks/``, ``/nodes/``, the probes and
``/metrics``, the dashboard and its event stream, and this document. Tests hold it to the app's
router, provoke every documented status, and fuzz the running daemon against it: a new route or
a new answer of a view belongs here too (``_operations``). This module only describes.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from aiohttp import web

from scale_scheduler.api.auth import requires_token
from scale_scheduler.api.keys import CONFIG
from scale_scheduler.api.pagination import MAX_PAGE_SIZE
from scale_scheduler.api.request_guard import MUTATING_METHODS
from scale_scheduler.api.task_body import MAX_BATCH, TaskIn
from scale_scheduler.api.views_nodes import NodeUpdate
from scale_scheduler.api.views_scheduler import SchedulerUpdate, SchedulerView
from scale_scheduler.api.views_usage import TaskDetailView
from scale_scheduler.daemon.scheduling.core_facade import (
    ContainerView,
    LeaderView,
    NodeView,
    StatusView,
    TaskView,
    UsageView,
)
from scale_scheduler.daemon.service.config import ApiConfig
from scale_scheduler.state.domain import TaskState

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
MAX_ID = 2**63 - 1  # SQLite's largest integer: no row has a larger id
MAX_PAGE = 10**9

Schema = dict[str, Any]


_REF = "#/components/schemas/{name}"


def _ref(name: str) -> Schema:
    return {"$ref": _REF.format(name=name)}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


_TIMESTAMP: Schema = _nullable({"type": "string", "format": "date-time"})


def _object(properties: dict[str, Schema], **extra: Any) -> Schema:
    """A closed object whose every property is always present."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


ANSWERS: dict[type[msgspec.Struct], str] = {
    TaskView: "Task",
    ContainerView: "Container",
    NodeView: "Node",
    SchedulerView: "SchedulerState",
    StatusView: "Status",
    LeaderView: "Leader",
    UsageView: "Usage",
    TaskDetailView: "TaskDetail",
}
"""The Structs the views encode, and their schemas' names (their parts keep their own names).
A field of these is required in the schema unless its default is ``UNSET``, which msgspec leaves
out: they have no other defaults, so the schemas' ``required`` are true of the answers."""
BODIES: dict[type[msgspec.Struct], str] = {
    TaskIn: "TaskSubmission",
    SchedulerUpdate: "SchedulerUpdate",
    NodeUpdate: "NodeUpdate",
}
"""The Structs request bodies are read into, and their schemas' names."""


def _generated(structs: dict[type[msgspec.Struct], str]) -> dict[str, Schema]:
    """msgspec's schemas of ``structs`` and of the Structs they hold, under the document's
    names. msgspec names a component after its class and adds the class name as its title: the
    names are mapped (in every ``$ref`` too) and the titles dropped."""
    _, components = msgspec.json.schema_components(list(structs), ref_template=_REF)
    names = {struct.__name__: name for struct, name in structs.items()}

    def renamed(value: Any) -> Any:
        if isinstance(value, dict):
            out = {key: renamed(item) for key, item in value.items() if key != "title"}
            ref = out.get("$ref", "")
            if ref.startswith(_REF.format(name="")):
                name = ref.rsplit("/", 1)[1]
                out["$ref"] = _REF.format(name=names.get(name, name))
            return out
        if isinstance(value, list):
            return [renamed(item) for item in value]
        return value

    return {names.get(name, name): renamed(schema) for name, schema in components.items()}


def _body_schemas() -> dict[str, Schema]:
    """What the views read, plus the rules msgspec cannot express: a task runs a command, an
    image, or both; an update names at least one field."""
    schemas = _generated(BODIES)
    task = schemas["TaskSubmission"]
    task["description"] = (
        "One task. 'command' is required unless 'container' is given; "
        "cpus and mem are required, mem and disk in MiB. The bounds are the README's Limits."
    )
    task["anyOf"] = [
        {"required": ["command"], "properties": {"command": {"type": "string"}}},
        {"required": ["container"], "properties": {"container": {"type": "object"}}},
    ]
    _constraint_rules(task)
    for name in ("SchedulerUpdate", "NodeUpdate"):
        schemas[name]["minProperties"] = 1
    return schemas


def _constraint_rules(task: Schema) -> None:
    """Marathon's constraint forms, one per operator (what ``parse_constraint`` accepts), and
    the group that the scoped ones (UNIQUE, GROUP_BY, MAX_PER, CLUSTER without a value) need."""
    listed = task["properties"]["constraints"]["anyOf"][0]
    part = dict(listed["items"]["items"])
    field = {**part, "minLength": 1}
    count = {**part, "pattern": "^[0-9]*[1-9][0-9]*$"}
    regex = {**part, "format": "regex"}

    def form(operator: str, *value: Schema, optional: bool = False) -> Schema:
        items = [field, {"const": operator}, *value]
        return {
            "type": "array",
            "prefixItems": items,
            "items": False,
            "minItems": 2 if optional else len(items),
            "maxItems": len(items),
        }

    each = {
        "description": "[field, OPERATOR] or [field, OPERATOR, value] (Marathon's form)",
        "oneOf": [
            form("UNIQUE"),
            form("CLUSTER", part, optional=True),
            form("GROUP_BY", count, optional=True),
            form("MAX_PER", count),
            form("LIKE", regex),
            form("UNLIKE", regex),
            form("IS", part),
        ],
    }
    # Beside the properties (which are the Struct's, field for field): "items" binds the list
    # form only, the {"attr": "value"} shorthand being an object.
    task["allOf"] = [{"properties": {"constraints": {"items": each}}}]
    operator = {"type": "array", "minItems": 2}
    scoped = {
        "anyOf": [
            {**operator, "prefixItems": [{}, {"enum": ["UNIQUE", "GROUP_BY", "MAX_PER"]}]},
            {**operator, "prefixItems": [{}, {"const": "CLUSTER"}], "maxItems": 2},
            {**operator, "prefixItems": [{}, {"const": "CLUSTER"}, {"maxLength": 0}]},
        ]
    }
    task["if"] = {
        "required": ["constraints"],
        "properties": {"constraints": {"type": "array", "contains": scoped}},
    }
    task["then"] = {"required": ["group"], "properties": {"group": {"type": "string"}}}


def _schemas() -> dict[str, Schema]:
    answers, bodies = _generated(ANSWERS), _body_schemas()
    shared = answers.keys() & bodies.keys()
    assert not shared, f"an answer and a body both name a schema {sorted(shared)}"
    return {
        **answers,
        **bodies,
        "TaskSubmissionBody": {
            "description": f"One task, or a batch of 1 to {MAX_BATCH} (all or nothing).",
            "oneOf": [
                _ref("TaskSubmission"),
                {
                    "type": "array",
                    "items": _ref("TaskSubmission"),
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                },
            ],
        },
        "TaskBatch": {"type": "array", "items": _ref("Task"), "minItems": 1},
        "DashboardSnapshot": _snapshot_schema(),
        "TaskPage": _page("Task"),
        "NodePage": _page("Node"),
        "Error": {"type": "string", "description": "A message a person can act on."},
    }


def _snapshot_schema() -> Schema:
    """What ``/dashboard/state/`` answers and every ``snapshot`` event of the stream carries."""
    count = {"type": "integer", "minimum": 0}
    text = _nullable({"type": "string"})
    number = {"type": "number"}
    return _object(
        {
            "time": {"type": "string", "format": "date-time"},
            "master": _ref("MasterStatus"),
            "scheduler": _object(
                {
                    "hostname": {"type": "string"},
                    "is_online": {"type": "boolean"},
                    "is_paused": {"type": "boolean"},
                    "connection": {"type": "string"},
                    "framework_id": text,
                    "last_error": text,
                    "subscriptions": count,
                    "reconnects": count,
                }
            ),
            "queue_depth": count,
            "resources": _nullable(_ref("ClusterResources")),
            "leader": _ref("Leader"),
            "tasks": {
                "type": "object",
                "description": "Live tasks per state (states without tasks are left out).",
                "propertyNames": {"enum": [state.value for state in TaskState]},
                "additionalProperties": count,
            },
            "counters": {"type": "object", "additionalProperties": count},
            "suppressed": {"type": "boolean"},
            "nodes": _object({"count": count, "items": {"type": "array", "items": _ref("Node")}}),
            "queue": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer", "minimum": 1},
                        "name": {"type": "string"},
                        "priority": {"type": "integer"},
                        "cpus": number,
                        "mem": number,
                        "disk": number,
                        "gpus": count,
                        "attempts": count,
                        "waiting_reason": text,
                    }
                ),
            },
            "recent": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer", "minimum": 1},
                        "name": {"type": "string"},
                        "state": {"type": "string", "enum": [s.value for s in TaskState]},
                        "hostname": text,
                        "attempts": count,
                        "attempt_classes": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["task", "cluster", "operator"]},
                        },
                        "cpus": number,
                        "mem": number,
                        "waiting_reason": text,
                        "message": text,
                        "reason": text,
                        "last_modified": _TIMESTAMP,
                    }
                ),
            },
        }
    )


def _page(item: str) -> Schema:
    link = _nullable({"type": "string", "format": "uri"})
    return _object(
        {
            "count": {"type": "integer", "minimum": 0},
            "next": link,
            "previous": link,
            "results": {"type": "array", "items": _ref(item)},
        }
    )


# --- responses ----------------------------------------------------------------------------------


def _json(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _text(description: str, headers: dict[str, Any] | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"text/plain": {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _header(description: str, *, required: bool = True, fmt: str | None = None) -> Schema:
    schema: Schema = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    return {"description": description, "required": required, "schema": schema}


def _responses() -> dict[str, Schema]:
    return {
        "BadRequest": _text(
            "The request is invalid (its body or a parameter, a malformed or over-long request "
            "line or header, more than one Authorization header); the message says what."
        ),
        "MisdirectedRequest": _text(
            "The Host header does not name this daemon (its address, the machine's names, "
            "mesos.hostname, mesos.webui_url's host or api.allowed_hosts)."
        ),
        "CrossOrigin": _text(
            "A browser sent the change from another origin (Origin or Sec-Fetch-Site)."
        ),
        "UnsupportedMediaType": _text("The request has a body that is not application/json."),
        "NotFound": _text("No such object (or the path matches no route)."),
        "Conflict": _text("The object is in a state that does not allow the request."),
        "PayloadTooLarge": _text("The request body is larger than api.max_body_bytes."),
        "RequestTimeout": _text(
            "The request body did not arrive within api.body_timeout of its headers; the "
            "connection is closed."
        ),
        "Unauthorized": _text(
            "The API token is missing or wrong (only when api.token_file is set).",
            {"WWW-Authenticate": _header("'Bearer realm=...' (with error=invalid_token)")},
        ),
        "MethodNotAllowed": _text(
            "The path does not serve this method (any method a path does not list).",
            {"Allow": _header("The methods the path serves.")},
        ),
        "MissingSchedulerRow": _text(
            "An internal error: the scheduler's database entry is missing (until restart)."
        ),
        "Redirect": {
            "description": "The same path with its trailing slash: repeat the request there.",
            "headers": {"Location": _header("The path with its trailing slash.")},
        },
    }


def _use(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


# --- operations ---------------------------------------------------------------------------------


def _id_parameter(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    }


_PAGE_PARAMETERS: list[Schema] = [
    {
        "name": "page",
        "in": "query",
        "description": "Page number, from 1.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    },
    {
        "name": "page_size",
        "in": "query",
        "description": "Items per page (default api.page_size).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    },
]


def _body(schema_name: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _operations() -> dict[str, dict[str, Any]]:
    """Every route's operations without the shared 401/413/308; ``path -> method -> operation``."""
    location = {"Location": _header("The URL of the object.", fmt="uri")}
    task_states = ", ".join(state.value for state in TaskState)
    return {
        "/scheduler/": {
            "get": {
                "operationId": "getScheduler",
                "summary": "The scheduler's global pause flag.",
                "responses": {
                    "200": _json("The scheduler.", _ref("SchedulerState")),
                    "500": _use("MissingSchedulerRow"),
                },
            },
            "patch": {
                "operationId": "updateScheduler",
                "summary": "Pause or resume the whole scheduler (committed before the answer).",
                "requestBody": _body("SchedulerUpdate"),
                "responses": {
                    "201": _json("The updated scheduler.", _ref("SchedulerState"), location),
                    "400": _use("BadRequest"),
                    "500": _use("MissingSchedulerRow"),
                },
            },
        },
        "/status/": {
            "get": {
                "operationId": "getStatus",
                "summary": "Master, scheduler, queue depth and cluster resources.",
                "responses": {"200": _json("The status.", _ref("Status"))},
            }
        },
        "/leader/": {
            "get": {
                "operationId": "getLeader",
                "summary": "Who leads (answered by each instance itself, never forwarded).",
                "responses": {"200": _json("The leader and this instance.", _ref("Leader"))},
            }
        },
        "/usage/": {
            "get": {
                "operationId": "getUsage",
                "summary": "The latest usage round: its age, the agents it covers, the sums.",
                "responses": {"200": _json("The usage.", _ref("Usage"))},
            }
        },
        "/queue/": {
            "get": {
                "operationId": "listQueue",
                "summary": "Queued tasks in launch order, with why each waits.",
                "parameters": _PAGE_PARAMETERS,
                "responses": {
                    "200": _json("One page of the queue.", _ref("TaskPage")),
                    "400": _use("BadRequest"),
                },
            },
            "post": {
                "operationId": "submitTasks",
                "summary": f"Queue one task, or a batch of up to {MAX_BATCH} (all or nothing).",
                "requestBody": _body("TaskSubmissionBody"),
                "responses": {
                    "201": _json(
                        "The queued task (for one task, with Location) or every queued task "
                        "of the batch, in order.",
                        {"oneOf": [_ref("Task"), _ref("TaskBatch")]},
                        {
                            "Location": _header(
                                "The new task's URL (one task only).", required=False, fmt="uri"
                            )
                        },
                    ),
                    "400": _use("BadRequest"),
                },
            },
        },
        "/tasks/": {
            "get": {
                "operationId": "listTasks",
                "summary": "Every task in id order, optionally of one state.",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "description": f"Only tasks in this state (any case): {task_states}.",
                        "schema": {
                            "type": "string",
                            "enum": [
                                *(s.value for s in TaskState),
                                *(s.value.lower() for s in TaskState),
                                "",  # no filter
                            ],
                        },
                    },
                    *_PAGE_PARAMETERS,
                    {
                        "name": "after",
                        "in": "query",
                        "description": "Page by key: the first page_size tasks with a larger id "
                        "(fast however deep; then next links carry after, and previous is null). "
                        "With page, pages count from that id.",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                    },
                ],
                "responses": {
                    "200": _json("One page of tasks.", _ref("TaskPage")),
                    "400": _use("BadRequest"),
                },
            }
        },
        "/tasks/{task_id}/": {
            "parameters": [_id_parameter("task_id", "task")],
            "get": {
                "operationId": "getTask",
                "summary": "One task, with its real resource usage.",
                "responses": {
                    "200": _json("The task.", _ref("TaskDetail")),
                    "404": _use("NotFound"),
                },
            },
            "delete": {
                "operationId": "deleteTask",
                "summary": "Cancel a queued task, or ask Mesos to kill a launched one.",
                "responses": {
                    "200": _json("Canceled: the task was still queued.", _ref("Task")),
                    "202": _json(
                        "Kill requested: the task's state follows Mesos's updates.", _ref("Task")
                    ),
                    "404": _use("NotFound"),
                    "409": _use("Conflict"),
                },
            },
        },
        "/nodes/": {
            "get": {
                "operationId": "listNodes",
                "summary": "The agents the scheduler knows, in id order.",
                "parameters": [
                    {
                        "name": "hostname",
                        "in": "query",
                        "description": "Only the node with this host name.",
                        "schema": {"type": "string"},
                    },
                    *_PAGE_PARAMETERS,
                ],
                "responses": {
                    "200": _json("One page of nodes.", _ref("NodePage")),
                    "400": _use("BadRequest"),
                },
            }
        },
        "/nodes/{node_id}/": {
            "parameters": [_id_parameter("node_id", "node")],
            "get": {
                "operationId": "getNode",
                "summary": "One node.",
                "responses": {
                    "200": _json("The node.", _ref("Node")),
                    "404": _use("NotFound"),
                },
            },
            "patch": {
                "operationId": "updateNode",
                "summary": "Pause, resume, deactivate or reactivate one node.",
                "requestBody": _body("NodeUpdate"),
                "responses": {
                    "200": _json("The updated node.", _ref("Node")),
                    "400": _use("BadRequest"),
                    "404": _use("NotFound"),
                },
            },
        },
        "/healthz": {
            "get": {
                "operationId": "getHealthz",
                "summary": "Liveness: answered by the event loop itself.",
                "responses": {"200": _plain("ok, and the last event loop lag.")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadyz",
                "summary": "Readiness: database answering and framework subscribed.",
                "responses": {
                    "200": _plain("ready, and the master and framework id."),
                    "503": _plain("not ready, and every reason, one per line."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics (OpenMetrics when the Accept header asks for it).",
                "responses": {
                    "200": {
                        "description": "The metrics in the exposition format.",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
        "/": _asset("getDashboard", "The live dashboard page.", "text/html"),
        "/dashboard.css": _asset("getDashboardCss", "The dashboard's style sheet.", "text/css"),
        "/dashboard.js": _asset("getDashboardJs", "The dashboard's script.", "text/javascript"),
        "/dashboard/state/": {
            "get": {
                "operationId": "getDashboardState",
                "summary": "One dashboard snapshot.",
                "responses": {"200": _json("The snapshot.", _ref("DashboardSnapshot"))},
            }
        },
        "/dashboard/events/": {
            "get": {
                "operationId": "getDashboardEvents",
                "summary": "Server-Sent Events: a 'snapshot' event (data: a DashboardSnapshot) "
                "about once a second while the stream is open.",
                "responses": {
                    "200": {
                        "description": "An endless event stream.",
                        "content": {"text/event-stream": {"schema": _snapshot_event()}},
                    },
                    "503": _text(
                        "api.max_event_streams streams are open already; retry later.",
                        {"Retry-After": _header("Seconds to wait before retrying.")},
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document.",
                "responses": {
                    "200": _json("The OpenAPI 3.1 description of the API.", {"type": "object"})
                },
            }
        },
    }


def _snapshot_event() -> Schema:
    """One event of the stream as its fields (``event``, ``data``)."""
    return {
        "type": "object",
        "properties": {
            "event": {"const": "snapshot"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _ref("DashboardSnapshot"),
            },
        },
        "required": ["event", "data"],
    }


def _plain(description: str) -> Schema:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _asset(operation_id: str, summary: str, content_type: str) -> dict[str, Schema]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "responses": {
                "200": {
                    "description": summary,
                    "headers": {"ETag": _header("The file's version.")},
                    "content": {content_type: {"schema": {"type": "string"}}},
                },
                "304": {
                    "description": "Unchanged since the If-None-Match ETag.",
                    "headers": {"ETag": _header("The file's version.")},
                },
                "503": _text("The daemon is starting; the file is not read yet."),
            },
        }
    }


def _redirect_alias(path: str, item: dict[str, Any]) -> dict[str, Any]:
    """The path without its trailing slash: every method answers 308 to the real path."""
    alias: dict[str, Any] = {}
    if "parameters" in item:  # any digits redirect; the real path then tells whether it exists
        alias["parameters"] = [
            {**parameter, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
            for parameter in item["parameters"]
        ]
    for method, operation in item.items():
        if method == "parameters":
            continue
        responses: dict[str, Schema] = {"308": _use("Redirect")}
        if "parameters" in item:
            responses["404"] = _use("NotFound")
        alias[method] = {
            "operationId": f"{operation['operationId']}Redirect",
            "summary": f"Redirects (308) to {path}.",
            "responses": responses,
        }
    return alias


def build_document(api: ApiConfig) -> dict[str, Any]:
    """The whole document for this API configuration (auth on or off, reads open or not)."""
    paths: dict[str, dict[str, Any]] = {}
    aliases: set[str] = set()
    for path, item in _operations().items():
        paths[path] = item
        if path.endswith("/") and path != "/":
            paths[path.rstrip("/")] = _redirect_alias(path, item)
            aliases.add(path.rstrip("/"))
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            # What request_guard and auth answer on every route, before any view runs.
            operation["responses"].setdefault("400", _use("BadRequest"))
            operation["responses"]["421"] = _use("MisdirectedRequest")
            if method.upper() in MUTATING_METHODS and path not in aliases:
                operation["responses"]["403"] = _use("CrossOrigin")
                operation["responses"]["415"] = _use("UnsupportedMediaType")
            if "requestBody" in operation:
                operation["responses"]["413"] = _use("PayloadTooLarge")
                operation["responses"]["408"] = _use("RequestTimeout")
            if requires_token(api, method.upper(), path):
                operation["security"] = [{"bearerAuth": []}]
                operation["responses"]["401"] = _use("Unauthorized")
    components: dict[str, Any] = {"schemas": _schemas(), "responses": _responses()}
    if api.token_file:
        components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token in the daemon's api.token_file.",
            }
        }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "scale-scheduler",
            "version": API_VERSION,
            "description": (
                "The REST API of the scale-scheduler daemon. Errors are text/plain. A path "
                "without its trailing slash answers 308 to the path with it; a method a path "
                "does not list answers 405 with Allow; a body larger than api.max_body_bytes "
                "answers 413, and one that does not arrive within api.body_timeout 408. "
                "With api.token_file set, writes (and reads too with "
                "api.read_auth) need 'Authorization: Bearer <token>'. Every request must name "
                "the daemon in Host (421 otherwise); a change with a body must be "
                "application/json (415) and may not come from another origin (403). Over "
                "api.max_connections, with every connection busy, a new connection is answered "
                "503 before its request is read."
            ),
        },
        "paths": paths,
        "components": components,
    }


@functools.cache
def _encoded(token_set: bool, read_auth: bool) -> bytes:
    api = ApiConfig(token_file="<set>" if token_set else "", read_auth=read_auth)
    return msgspec.json.encode(build_document(api))


async def get_openapi(request: web.Request) -> web.Response:
    api = request.app[CONFIG].api
    return web.Response(
        body=_encoded(bool(api.token_file), api.read_auth), content_type="application/json"
    )
