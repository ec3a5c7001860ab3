"""Configuration: the one registry of settings, YAML loading, environment overrides, validation.

Every setting is a typed field of a section struct below, with its default and its help text
(``msgspec.Meta(description=...)``). That registry feeds validation, ``config.yaml``'s comments
(checked by a test) and the README's reference (``scale-scheduler config-reference``).

Environment variables override the file: ``SCALE_SCHEDULER_<SECTION>__<KEY>=value``, e.g.
``SCALE_SCHEDULER_API__PORT=9000``; values are read as YAML scalars (``true``, ``9000``,
``[a, b]``). Durations are seconds (floats) everywhere.

Errors are ``ConfigError`` with one message naming the key and what was expected.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

ENV_PREFIX = "SCALE_SCHEDULER_"

Seconds = Annotated[float, msgspec.Meta(ge=0)]


def _doc(text: str, **constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(description=text, **constraints)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what was expected."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class MesosConfig(_Section, frozen=True):
    master: Annotated[
        str,
        _doc(
            "Where the Mesos master is: http://host:port, a comma-separated list of masters, "
            "or zk://host1:2181,host2:2181/mesos for ZooKeeper leader detection."
        ),
    ] = "http://127.0.0.1:5050"
    framework_name: Annotated[str, _doc("Framework name shown by Mesos.", min_length=1)] = (
        "scale-scheduler"
    )
    user: Annotated[
        str, _doc("Unix user tasks run as; empty means the user running the daemon.")
    ] = ""
    roles: Annotated[
        list[str], _doc("Roles the framework subscribes with (MULTI_ROLE).", min_length=1)
    ] = msgspec.field(default_factory=lambda: ["*"])
    failover_timeout: Annotated[
        float,
        _doc(
            "Seconds Mesos keeps the framework's tasks running while the daemon is away. "
            "0 kills every task the moment the daemon disconnects.",
            ge=0,
        ),
    ] = 604800.0
    principal: Annotated[
        str, _doc("Principal for HTTP Basic authentication to the master; empty for none.")
    ] = ""
    secret_file: Annotated[
        str, _doc("File holding the principal's secret (read at start-up, never logged).")
    ] = ""
    driver: Annotated[
        Literal["native", "pymesos"],
        _doc("Mesos client: native (asyncio v1 HTTP API) or pymesos (Python 3.10 only)."),
    ] = "native"
    hostname: Annotated[
        str, _doc("This scheduler's host name as told to Mesos; empty means the machine's name.")
    ] = ""
    webui_url: Annotated[
        str, _doc("URL Mesos's web UI links to; empty means the daemon's own API address.")
    ] = ""
    gpu_resources: Annotated[
        bool, _doc("Ask for offers from GPU agents (GPU_RESOURCES capability).")
    ] = False
    request_timeout: Annotated[float, _doc("Seconds before a call to the master fails.", gt=0)] = (
        10.0
    )
    backoff_max: Annotated[
        float, _doc("Cap, in seconds, of the exponential back-off between reconnects.", gt=0)
    ] = 15.0
    backoff_initial: Annotated[
        float, _doc("First delay, in seconds, of the back-off between reconnects.", gt=0)
    ] = 0.5
    max_record_bytes: Annotated[
        int,
        _doc(
            "Largest event record accepted from the master's stream; a larger one closes the "
            "stream and resubscribes.",
            ge=1024,
        ),
    ] = 64 * 1024 * 1024
    max_call_connections: Annotated[
        int, _doc("Pooled HTTP connections used for calls to the master.", ge=1, le=1024)
    ] = 16


class ApiConfig(_Section, frozen=True):
    host: Annotated[str, _doc("Address the REST API listens on.", min_length=1)] = "127.0.0.1"
    port: Annotated[int, _doc("Port the REST API listens on.", ge=0, le=65535)] = 8000
    max_body_bytes: Annotated[
        int, _doc("Largest request body accepted; larger ones get 413.", ge=1024)
    ] = 16 * 1024 * 1024
    page_size: Annotated[int, _doc("Default page size of paginated lists.", ge=1, le=10000)] = 100
    token_file: Annotated[
        str,
        _doc(
            "File holding the API's bearer token (read at start-up, never logged); when set, "
            "PATCH, POST and DELETE need 'Authorization: Bearer <token>'. Empty: no token."
        ),
    ] = ""
    read_auth: Annotated[
        bool, _doc("With token_file set, require the token for reads (GET) too.")
    ] = False


class StateConfig(_Section, frozen=True):
    path: Annotated[str, _doc("SQLite database file holding all durable state.", min_length=1)] = (
        "scale-scheduler.db"
    )


class LoggingConfig(_Section, frozen=True):
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        _doc("Lowest level logged."),
    ] = "info"
    format: Annotated[
        Literal["json", "console", "auto"],
        _doc(
            "json: one JSON object per line (for journald); console: readable lines; "
            "auto: console on a terminal, json otherwise."
        ),
    ] = "auto"


class SchedulerConfig(_Section, frozen=True):
    refuse_seconds: Annotated[
        float, _doc("Filter on offers declined while queued work might still use the agent.", ge=0)
    ] = 5.0
    idle_refuse_seconds: Annotated[
        float, _doc("Filter on offers declined when nothing queued could use the agent.", ge=0)
    ] = 120.0
    revive_interval: Annotated[
        float, _doc("Least number of seconds between two REVIVE calls.", ge=0)
    ] = 5.0
    reconcile_interval: Annotated[
        float, _doc("Seconds between periodic reconciliations of all running tasks.", gt=0)
    ] = 600.0
    launch_timeout: Annotated[
        float,
        _doc(
            "Seconds a launched task may go without any status before it is reconciled; "
            "silent as long again after that, it is marked lost.",
            gt=0,
        ),
    ] = 300.0
    reconcile_retry: Annotated[
        float,
        _doc(
            "Seconds before explicit reconciliation is re-sent for tasks that stayed silent "
            "(doubling each round, three rounds, then implicit reconciliation).",
            gt=0,
        ),
    ] = 5.0
    agents_refresh_interval: Annotated[
        float,
        _doc(
            "Seconds between reads of the agents' total resources from the master's operator "
            "API (GET_AGENTS); also read after every SUBSCRIBED.",
            gt=0,
        ),
    ] = 60.0
    max_in_flight: Annotated[
        int,
        _doc(
            "Most tasks launched but not yet confirmed (LAUNCHING, STAGING, STARTING) at once. "
            "Within it, the bound follows the measured rate at which launches are confirmed "
            "(about 2 s of it, at least 500), and a pass launches no more than the room left "
            "under about 0.5 s of status update handling; offers left over are declined with "
            "a 0.5 s filter. 0 turns flow control off.",
            ge=0,
        ),
    ] = 20_000


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    mesos: MesosConfig = msgspec.field(default_factory=MesosConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)

    def effective_user(self) -> str:
        return self.mesos.user or getpass.getuser()

    def effective_hostname(self) -> str:
        return self.mesos.hostname or socket.getfqdn()


def _section_types() -> dict[str, type[msgspec.Struct]]:
    return {f.name: f.type for f in msgspec.structs.fields(Config)}


def iter_settings() -> list[tuple[str, str, Any, str]]:
    """Every setting as ``(dotted key, type name, default, help)``, in declaration order."""
    info = msgspec.inspect.type_info(Config)
    assert isinstance(info, msgspec.inspect.StructType)
    out: list[tuple[str, str, Any, str]] = []
    defaults = msgspec.to_builtins(Config())
    for section in info.fields:
        section_type = section.type
        assert isinstance(section_type, msgspec.inspect.StructType)
        for f in section_type.fields:
            typ = f.type
            help_text = ""
            if isinstance(typ, msgspec.inspect.Metadata):
                help_text = (typ.extra_json_schema or {}).get("description", "")
            out.append(
                (
                    f"{section.name}.{f.name}",
                    _type_name(typ),
                    defaults[section.name][f.name],
                    help_text,
                )
            )
    return out


def _type_name(typ: msgspec.inspect.Type) -> str:
    if isinstance(typ, msgspec.inspect.Metadata):
        return _type_name(typ.type)
    if isinstance(typ, msgspec.inspect.LiteralType):
        return " | ".join(repr(v) for v in typ.values)
    if isinstance(typ, msgspec.inspect.ListType):
        return f"list of {_type_name(typ.item_type)}"
    return {
        msgspec.inspect.StrType: "string",
        msgspec.inspect.IntType: "integer",
        msgspec.inspect.FloatType: "number",
        msgspec.inspect.BoolType: "boolean",
    }.get(type(typ), type(typ).__name__)


_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN_RE = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")


def _explain(error: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    text = str(error)
    match = _PATH_RE.search(text)
    path = match.group("path") if match else ""
    detail = text[: match.start()] if match else text
    path = re.sub(r"\[(\d+)\]", r"[\1]", path)
    unknown = _UNKNOWN_RE.match(detail)
    if unknown:
        key = f"{path}.{unknown.group('field')}" if path else unknown.group("field")
        if not path:
            known = ", ".join(f.name for f in msgspec.structs.fields(Config))
            return f"{key}: unknown section (known sections: {known})"
        section = _section_types().get(path.split(".")[0])
        known = ", ".join(f.name for f in msgspec.structs.fields(section)) if section else ""
        return f"{key}: unknown key (known keys in {path}: {known})"
    if detail.startswith("Invalid enum value"):
        allowed = next((typ for key, typ, _d, _h in iter_settings() if key == path), "")
        got = detail.removeprefix("Invalid enum value").strip()
        return f"{path}: expected one of {allowed.replace(' | ', ', ')}; got {got}"
    detail = detail.replace("`", "")
    detail = detail[0].lower() + detail[1:] if detail else detail
    return f"{path or '(top level)'}: {detail}"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    sections = _section_types()
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :]
        section, sep, key = rest.partition("__")
        section, key = section.lower(), key.lower()
        if not sep or not key or section not in sections:
            raise ConfigError(
                f"{name}: not a setting; use {ENV_PREFIX}<SECTION>__<KEY>, "
                f"e.g. {ENV_PREFIX}API__PORT=9000"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: cannot read the value as YAML: {exc}") from None
        overrides.setdefault(section, {})[key] = value
    return overrides


def parse_config(raw: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a mapping (as read from YAML) plus environment overrides into a ``Config``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"(top level): expected a mapping of sections, got {type(raw).__name__}")
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for section, values in _env_overrides(environ if environ is not None else os.environ).items():
        current = merged.get(section)
        if current is None:
            current = merged[section] = {}
        if not isinstance(current, dict):
            raise ConfigError(
                f"{section}: expected a mapping of keys, got {type(current).__name__}"
            )
        current.update(values)
    for section, values in merged.items():
        if values is None:
            merged[section] = {}
    try:
        config = msgspec.convert(merged, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, merged)) from None
    _check_semantics(config)
    return config


def _check_semantics(config: Config) -> None:
    master = config.mesos.master.strip()
    if master.startswith("zk://"):
        hosts, _, path = master[len("zk://") :].partition("/")
        if not hosts or not path:
            raise ConfigError(
                f"mesos.master: expected zk://host:port[,host:port]/path, got {master!r}"
            )
    else:
        for item in master.split(","):
            if not re.fullmatch(r"(https?://)?[A-Za-z0-9_.\-\[\]:]+(:\d+)?/?", item.strip()):
                raise ConfigError(
                    "mesos.master: expected http://host:port, a comma-separated list of them, "
                    f"or zk://host:port/path, got {master!r}"
                )
    if any(not role.strip() for role in config.mesos.roles):
        raise ConfigError("mesos.roles: expected non-empty role names")
    if config.mesos.secret_file and not config.mesos.principal:
        raise ConfigError("mesos.secret_file: set mesos.principal too, or leave both empty")


def load_config(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (or only defaults and the environment when ``None``) and validate it."""
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(raw, environ)
    except ConfigError as exc:
        where = f" (in {path})" if path is not None else ""
        raise ConfigError(f"{exc}{where}") from None


def master_address_hint(master: str) -> tuple[str, int]:
    """Host and port of the first master named in ``mesos.master`` (before any connection).

    For ``zk://`` the leader is not known until ZooKeeper is asked: the host is empty.
    """
    master = master.strip()
    if master.startswith("zk://"):
        return "", 5050
    first = master.split(",")[0].strip()
    if "://" not in first:
        first = "http://" + first
    parsed = urlsplit(first)
    return parsed.hostname or "", parsed.port or 5050


_SECTION_HELP = {
    "mesos": "How to reach Mesos and how the framework presents itself.",
    "api": "The embedded REST API.",
    "state": "Durable state (SQLite, WAL, fsync on every commit).",
    "logging": "Structured logs on stdout.",
    "scheduler": "Offer handling and task life-cycle policy.",
}


def sample_yaml() -> str:
    """``config.yaml`` as shipped: every setting, its default and its help, from the registry."""
    lines = [
        "# scale-scheduler configuration. Every key is optional; shown values are the defaults.",
        "# Environment variables override keys: SCALE_SCHEDULER_<SECTION>__<KEY>=value,",
        "# e.g. SCALE_SCHEDULER_API__PORT=9000 (values are read as YAML scalars).",
        "# Validate with: scale-scheduler check-config --config config.yaml",
        "# (generated by 'scale-scheduler config-sample'; a test keeps it in step with the code)",
    ]
    current = ""
    for key, _typ, default, help_text in iter_settings():
        section, name = key.split(".", 1)
        if section != current:
            current = section
            lines += ["", f"# {_SECTION_HELP.get(section, '')}".rstrip(), f"{section}:"]
        for chunk in _wrap(help_text, 94):
            lines.append(f"  # {chunk}")
        dumped = yaml.safe_dump({name: default}, default_flow_style=True, width=1000).strip()
        lines.append(f"  {dumped[1:-1]}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
