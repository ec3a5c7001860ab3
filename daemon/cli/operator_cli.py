"""The operator commands of ``scale-scheduler``: thin HTTP clients of a running daemon's REST API.

Owns ``status``, ``pause``, ``resume``, ``nodes``, ``node-pause``, ``node-resume``, ``submit``,
``tasks`` and ``kill``: their arguments, the requests they send, and how answers are shown (tables,
or the API's JSON with ``--json``). The daemon validates everything; an error answer is printed
as the server wrote it. Uses ``urllib`` synchronously: a command is one short-lived process with
nothing else to do while it waits.

Exit statuses: 0 success, 1 the API answered with an error, 2 bad usage or input, 3 the daemon
could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from scale_scheduler.daemon.service.config import ConfigError, client_host, load_config

OK = 0
API_ERROR = 1
USAGE_ERROR = 2
UNREACHABLE = 3

EXIT_STATUS_HELP = (
    "exit status: 0 success, 1 the API answered with an error (its message is printed), "
    "2 bad usage or input, 3 the daemon could not be reached"
)


class CommandError(Exception):
    """Ends a command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApiClient:
    """JSON over HTTP to one daemon; proxies from the environment are ignored."""

    def __init__(self, base_url: str, timeout: float, token: str | None = None) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self._token = token
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str | int] | None = None,
    ) -> tuple[int, Any]:
        url = self.base_url + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace").strip() or "(no message)"
            if exc.code == 401:
                text += " (pass the token with --token-file, or --config with api.token_file)"
            raise CommandError(API_ERROR, f"{exc.code} {exc.reason}: {text}") from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (TimeoutError, ConnectionError) as exc:
            raise self._unreachable(exc) from None
        try:
            return status, json.loads(raw) if raw.strip() else None
        except ValueError:
            raise CommandError(
                API_ERROR, f"{url} did not answer with JSON; is --url the daemon's API?"
            ) from None

    def _unreachable(self, reason: object) -> CommandError:
        if isinstance(reason, TimeoutError):
            why = f"no answer within {self.timeout:g} s"
        elif isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror
        else:
            why = str(reason)
        return CommandError(
            UNREACHABLE,
            f"cannot reach the daemon at {self.base_url} ({why}); is it running? "
            "Point at it with --url or --config.",
        )

    def get(self, path: str, query: dict[str, str | int] | None = None) -> Any:
        return self.request("GET", path, query=query)[1]

    def get_all(self, path: str, query: dict[str, str | int] | None = None) -> list[Any]:
        """Every result of a paginated list, page by page."""
        results: list[Any] = []
        page = 1
        while True:
            body = self.get(path, {**(query or {}), "page": page, "page_size": 1000})
            results.extend(body["results"])
            if not body.get("next"):
                return results
            page += 1


# -- output ---------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` shows as ``-``."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _amount(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


# -- commands -------------------------------------------------------------------------------------

Result = tuple[Any, str]
"""What a command shows: the JSON for ``--json``, and the text for people."""


def cmd_status(client: ApiClient, args: argparse.Namespace) -> Result:
    body = client.get("status/")
    master, sched = body["master"], body["scheduler"]
    lines = [
        table(
            ["", "HOST", "ONLINE", "PAUSED"],
            [
                ["master", f"{master['hostname']}:{master['port']}", master["is_online"], None],
                ["scheduler", sched["hostname"], sched["is_online"], sched["is_paused"]],
            ],
        ),
        "",
        f"queue depth: {body['queue_depth']}",
    ]
    resources = body.get("resources")
    if resources:
        names = sorted({name for values in resources.values() for name in values})
        rows = [[kind, *(values.get(n) for n in names)] for kind, values in resources.items()]
        lines += ["", table(["RESOURCES", *(n.upper() for n in names)], rows)]
    else:
        lines += ["resources: not known yet (no agent totals from the master)"]
    lines += ["", _leader_line(client.get("leader/"))]
    return body, "\n".join(lines)


def _leader_line(view: dict[str, Any]) -> str:
    """Who leads, and what the instance asked is (``GET /leader/``, answered by it itself)."""
    this = view["this"]
    asked = f"this instance: {this['instance']} ({this['role']}, {this['api_url']})"
    leader = view["leader"]
    if leader is None:
        return f"leader: none known (epoch {view['epoch']}); {asked}"
    return (
        f"leader: {leader['instance']} at {leader['api_url']} (host {leader['hostname']}, "
        f"epoch {view['epoch']}, since {view['since']}); {asked}"
    )


def cmd_pause(client: ApiClient, args: argparse.Namespace) -> Result:
    return _set_paused(client, True)


def cmd_resume(client: ApiClient, args: argparse.Namespace) -> Result:
    return _set_paused(client, False)


def _set_paused(client: ApiClient, paused: bool) -> Result:
    _, body = client.request("PATCH", "scheduler/", {"is_paused": paused})
    word = "paused: no task is launched until resumed" if body["is_paused"] else "resumed"
    return body, f"scheduler {word}"


def _node_rows(nodes: list[dict[str, Any]]) -> str:
    rows = []
    for node in nodes:
        total = node["resources"].get("total") or {}
        scheduled = node["resources"].get("scheduled") or {}
        rows.append(
            [
                node["id"],
                node["hostname"],
                node["state"],
                node["is_paused"],
                node["pause_reason"],
                node["is_active"],
                node["running_tasks"],
                f"{_amount(scheduled.get('cpus'))}/{_amount(total.get('cpus'))}",
                f"{_amount(scheduled.get('mem'))}/{_amount(total.get('mem'))}",
            ]
        )
    headers = ["ID", "HOSTNAME", "STATE", "PAUSED", "REASON", "ACTIVE", "TASKS", "CPUS", "MEM"]
    return table(headers, rows)


def cmd_nodes(client: ApiClient, args: argparse.Namespace) -> Result:
    nodes = client.get_all("nodes/")
    if not nodes:
        return nodes, "no nodes known yet (they appear with the first offers from the master)"
    return nodes, _node_rows(nodes) + "\n\nCPUS and MEM (MB): scheduled/total"


def _node_by_hostname(client: ApiClient, hostname: str) -> dict[str, Any]:
    body = client.get("nodes/", {"hostname": hostname})
    if not body["results"]:
        raise CommandError(
            API_ERROR, f"no node with hostname {hostname!r}; 'scale-scheduler nodes' lists them"
        )
    node: dict[str, Any] = body["results"][0]
    return node


def cmd_node_pause(client: ApiClient, args: argparse.Namespace) -> Result:
    node = _node_by_hostname(client, args.hostname)
    change: dict[str, Any] = {"is_paused": True}
    if args.reason is not None:
        change["pause_reason"] = args.reason
    _, body = client.request("PATCH", f"nodes/{node['id']}/", change)
    why = f" ({body['pause_reason']})" if body.get("pause_reason") else ""
    return body, f"node {body['hostname']} paused{why}"


def cmd_node_resume(client: ApiClient, args: argparse.Namespace) -> Result:
    node = _node_by_hostname(client, args.hostname)
    _, body = client.request("PATCH", f"nodes/{node['id']}/", {"is_paused": False})
    return body, f"node {body['hostname']} resumed (state {body['state']})"


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(USAGE_ERROR, f"{option} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


_TASK_OPTIONS = (
    "command",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "ports",
    "priority",
    "max_attempts",
    "kill_grace_period",
    "max_runtime",
    "group",
)
_OPERATORS = frozenset({"UNIQUE", "CLUSTER", "GROUP_BY", "MAX_PER", "LIKE", "UNLIKE", "IS"})


def _constraints(values: list[str]) -> list[list[str]]:
    """``--constraint`` values in Marathon's list form: ``field:OPERATOR[:value]``
    (``hostname:UNIQUE``, ``rack:GROUP_BY:3``, ``zone:LIKE:us-.*``) or ``KEY=VALUE`` (IS)."""
    out: list[list[str]] = []
    for item in values:
        field, sep, rest = item.partition(":")
        operator, _, value = rest.partition(":")
        if sep and field and operator in _OPERATORS:
            out.append([field, operator] + ([value] if ":" in rest else []))
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(
                USAGE_ERROR,
                f"--constraint expects FIELD:OPERATOR[:VALUE] or KEY=VALUE, got {item!r}",
            )
        out.append([key, "IS", value])
    return out


def _tasks_from_args(args: argparse.Namespace) -> Any:
    given = [
        name
        for name in ("name", *_TASK_OPTIONS, "image", "retry_backoff")
        if getattr(args, name) is not None
    ]
    given += [name for name in ("env", "label", "constraint") if getattr(args, name)]
    if args.file is not None:
        if given or args.count != 1:
            raise CommandError(USAGE_ERROR, "use either --file or task options, not both")
        return _read_task_file(args.file)
    if not given:
        raise CommandError(
            USAGE_ERROR, "describe the task with --name, --command, --cpus, --mem ... or --file"
        )
    task: dict[str, Any] = {}
    for name in ("name", *_TASK_OPTIONS):
        value = getattr(args, name)
        if value is not None:
            task[name] = value
    if args.image is not None:
        task["container"] = {"image": args.image}
    if args.retry_backoff is not None:
        task["retry_backoff"] = _backoff(args.retry_backoff)
    for option, field in (("env", "env"), ("label", "labels")):
        if getattr(args, option):
            task[field] = _pairs(getattr(args, option), f"--{option}")
    if args.constraint:
        task["constraints"] = _constraints(args.constraint)
    if args.count < 1:
        raise CommandError(USAGE_ERROR, "--count must be at least 1")
    if args.count == 1:
        return task
    name = task.get("name", "task")
    return [{**task, "name": f"{name}-{i}"} for i in range(1, args.count + 1)]


def _backoff(text: str) -> dict[str, float]:
    """``INITIAL[,FACTOR[,MAX]]`` seconds, factor, seconds."""
    parts = text.split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 3 or len(values) != len(parts):
        raise CommandError(
            USAGE_ERROR, f"--retry-backoff expects INITIAL[,FACTOR[,MAX]], got {text!r}"
        )
    return dict(zip(("initial", "factor", "max"), values, strict=False))


def _read_task_file(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(USAGE_ERROR, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        # YAML is a superset of JSON: one parser reads both.
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandError(USAGE_ERROR, f"{path}: not valid JSON or YAML: {exc}") from None


def cmd_submit(client: ApiClient, args: argparse.Namespace) -> Result:
    payload = _tasks_from_args(args)
    _, body = client.request("POST", "queue/", payload)
    created = body if isinstance(body, list) else [body]
    rows = [[t["id"], t["name"], t["state"], t["priority"], t["cpus"], t["mem"]] for t in created]
    text = table(["ID", "NAME", "STATE", "PRIORITY", "CPUS", "MEM"], rows)
    return body, f"{text}\n\n{len(created)} task(s) queued"


def cmd_tasks(client: ApiClient, args: argparse.Namespace) -> Result:
    query: dict[str, str | int] = {"page": args.page}
    if args.state:
        query["state"] = args.state.upper()
    if args.page_size is not None:
        query["page_size"] = args.page_size
    body = client.get("tasks/", query)
    results = body["results"]
    if not results:
        return body, f"no tasks{' in state ' + args.state.upper() if args.state else ''}"
    rows = []
    for task in results:
        last = task.get("last_status") or {}
        note = task.get("waiting_reason") or last.get("message") or last.get("reason")
        rows.append(
            [
                task["id"],
                task["name"],
                task["state"],
                task["priority"],
                task["hostname"],
                task["attempts"],
                note,
            ]
        )
    text = table(["ID", "NAME", "STATE", "PRIORITY", "HOST", "ATTEMPTS", "NOTE"], rows)
    footer = f"page {args.page}: {len(results)} of {body['count']} task(s)"
    if body.get("next"):
        footer += f"; next page: --page {args.page + 1}"
    return body, f"{text}\n\n{footer}"


def cmd_kill(client: ApiClient, args: argparse.Namespace) -> Result:
    status, body = client.request("DELETE", f"tasks/{args.task_id}/")
    if status == 200:
        return body, f"task {args.task_id} canceled before launch (now {body['state']})"
    state = body["state"]
    return (
        body,
        f"kill of task {args.task_id} sent to Mesos (it stays {state} until Mesos confirms)",
    )


# -- parsing and dispatch -------------------------------------------------------------------------

Command = Callable[[ApiClient, argparse.Namespace], Result]

COMMANDS: dict[str, tuple[Command, str]] = {
    "status": (cmd_status, "show the master, the scheduler, the queue depth and resources"),
    "pause": (cmd_pause, "pause the scheduler: nothing new is launched"),
    "resume": (cmd_resume, "resume the scheduler"),
    "nodes": (cmd_nodes, "list the nodes (agents) with their flags and resources"),
    "node-pause": (cmd_node_pause, "pause one node: nothing new is launched on it"),
    "node-resume": (cmd_node_resume, "resume one node"),
    "submit": (cmd_submit, "queue tasks from options or from a JSON/YAML file"),
    "tasks": (cmd_tasks, "list tasks, optionally in one state"),
    "kill": (cmd_kill, "cancel a queued task or kill a launched one"),
}


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add every operator command to the ``scale-scheduler`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--url",
        help="the daemon's API, e.g. http://127.0.0.1:8000/ (default: api.host and api.port "
        "from --config)",
    )
    config_arg(common)
    group.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the API's bearer token (default: api.token_file from --config)",
    )
    group.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="default: %(default)s"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    parsers = {
        name: commands.add_parser(name, parents=[common], help=text, epilog=EXIT_STATUS_HELP)
        for name, (_, text) in COMMANDS.items()
    }
    for name in ("node-pause", "node-resume"):
        parsers[name].add_argument("hostname", metavar="HOST", help="the node's hostname")
    parsers["node-pause"].add_argument("--reason", help="why (shown by 'nodes')")

    submit = parsers["submit"]
    submit.add_argument(
        "--file", metavar="PATH", help="a task or a list of tasks, JSON or YAML (- for stdin)"
    )
    submit.add_argument("--name")
    submit.add_argument("--command", help="shell command to run")
    submit.add_argument("--image", help="container image (Docker)")
    submit.add_argument("--cpus", type=float)
    submit.add_argument("--mem", type=float, help="MB")
    submit.add_argument("--disk", type=float, help="MB")
    submit.add_argument("--gpus", type=int)
    submit.add_argument("--ports", type=int, help="number of ports to assign")
    submit.add_argument("--priority", type=int, help="lower launches first (default 100)")
    submit.add_argument(
        "--max-attempts", type=int, help="attempts that may fail by the task's own fault"
    )
    submit.add_argument(
        "--kill-grace-period", type=float, metavar="SECONDS", help="SIGTERM to SIGKILL on a kill"
    )
    submit.add_argument(
        "--max-runtime", type=float, metavar="SECONDS", help="an attempt running longer fails"
    )
    submit.add_argument(
        "--retry-backoff",
        metavar="INITIAL[,FACTOR[,MAX]]",
        help="wait before a retry after its own failure (default scheduler.retry_backoff_*)",
    )
    for option, text in (
        ("--env", "environment variable"),
        ("--label", "label (sim.duration=SECONDS scripts the simulator)"),
    ):
        submit.add_argument(
            option, action="append", metavar="KEY=VALUE", help=f"{text}; repeatable"
        )
    submit.add_argument(
        "--constraint",
        action="append",
        metavar="FIELD:OP[:VALUE]",
        help="placement constraint as Marathon's (hostname:UNIQUE, rack:GROUP_BY:3, "
        "zone:LIKE:us-.*) or KEY=VALUE for IS; repeatable",
    )
    submit.add_argument(
        "--group", help="the task group that UNIQUE, GROUP_BY, MAX_PER and CLUSTER count"
    )
    submit.add_argument(
        "--count", type=int, default=1, help="queue N copies named NAME-1..NAME-N (one batch)"
    )

    tasks = parsers["tasks"]
    tasks.add_argument("--state", help="QUEUED, RUNNING, FINISHED, ...")
    tasks.add_argument("--page", type=int, default=1)
    tasks.add_argument("--page-size", type=int, help="default: the daemon's api.page_size")

    parsers["kill"].add_argument("task_id", metavar="ID", type=int, help="the task's id")


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CommandError(USAGE_ERROR, f"cannot read the token file {path}: {why}") from None
    if not token:
        raise CommandError(USAGE_ERROR, f"the token file {path} is empty")
    return token


def connect(args: argparse.Namespace) -> ApiClient:
    """The client ``--url``/``--token-file`` ask for, else what the config says."""
    try:
        api = load_config(args.config).api
    except ConfigError as exc:
        raise CommandError(USAGE_ERROR, f"config error: {exc}") from None
    url = args.url or f"http://{client_host(api.host)}:{api.port}/"
    token_file = args.token_file or api.token_file
    token = _read_token(token_file) if token_file else None
    return ApiClient(url, args.timeout, token)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the operator command named by ``args.subcommand``; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    command, _ = COMMANDS[args.subcommand]
    try:
        data, text = command(connect(args), args)
    except CommandError as exc:
        print(f"scale-scheduler: {exc}", file=err)
        return exc.code
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        out.write(text + "\n")
    return OK
