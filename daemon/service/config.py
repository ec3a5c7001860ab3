"""Configuration: the one registry of settings, YAML loading, environment overrides, validation.

Every setting is a typed field of a section struct below, with its default and its help text
(``msgspec.Meta(description=...)``). That registry feeds validation, ``config.yaml``'s comments
(checked by a test) and the README's reference (``scale-scheduler config-reference``).

Environment variables override the file: ``SCALE_SCHEDULER_<SECTION>__<KEY>=value``, e.g.
``SCALE_SCHEDULER_API__PORT=9000``; values are read as YAML scalars (``true``, ``9000``,
``[a, b]``). Durations are seconds (floats) everywhere.

Errors are ``ConfigError`` with one line naming the key, what was expected and where the value
came from (the file, or the environment variable). Choice settings (``logging.level: INFO``) are
read in any case. A YAML mapping that names a key twice is refused (PyYAML keeps the last).
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from scale_scheduler.daemon.scheduling.retry_backoff import MAX_BACKOFF_SECONDS, RetryBackoff
from scale_scheduler.daemon.service.authority import parse_authority
from scale_scheduler.daemon.service.validation_failure import failure_of
from scale_scheduler.state.postgres.dsn import dsn_has_password, dsn_problem, redact_dsn

ENV_PREFIX = "SCALE_SCHEDULER_"

Seconds = Annotated[float, msgspec.Meta(ge=0)]


def _doc(text: str, **constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(description=text, **constraints)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what was expected.

    ``key`` is the dotted setting the message is about (``api.port``), when there is one: it tells
    whether the value came from the file or from an environment variable.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names one key twice (it keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_seen: dict[Any, yaml.Mark] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = first_seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: line, column, problem (and its context)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}"
    return " ".join(str(exc).split())


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
    give_up_after: Annotated[
        float,
        _doc(
            "Seconds without a subscription to a master after which the daemon exits with "
            "status 6 (checked between attempts, so up to request_timeout later); 0 retries "
            "forever.",
            ge=0,
        ),
    ] = 0.0
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
    allowed_hosts: Annotated[
        list[str],
        _doc(
            "More names clients may use in the Host header (host or host:port, e.g. a reverse "
            "proxy's name), besides the daemon's own: its address, the machine's names, "
            "mesos.hostname and mesos.webui_url's host. Other Host headers get 421."
        ),
    ] = msgspec.field(default_factory=list)
    header_timeout: Annotated[
        float,
        _doc("Seconds a new connection has to send its first request's headers.", gt=0),
    ] = 10.0
    body_timeout: Annotated[
        float,
        _doc(
            "Seconds a request's whole body has to arrive once its headers have; a slower "
            "one is answered 408 and the connection closed.",
            gt=0,
        ),
    ] = 30.0
    idle_timeout: Annotated[
        float, _doc("Seconds a kept-alive connection may wait for its next request.", gt=0)
    ] = 75.0
    max_connections: Annotated[
        int,
        _doc(
            "Most client connections open at once (kept below the open-file limit); over it, "
            "the longest-idle connection is closed, or the new one answered 503.",
            ge=1,
        ),
    ] = 512
    max_event_streams: Annotated[
        int,
        _doc(
            "Most dashboard event streams (GET /dashboard/events/) open at once; over it, "
            "503. Each holds a connection: kept well below max_connections.",
            ge=1,
        ),
    ] = 32


class StateConfig(_Section, frozen=True):
    backend: Annotated[
        Literal["sqlite", "postgresql"],
        _doc(
            "Where durable state lives: sqlite (the file state.path, the embedded default) or "
            "postgresql (the database state.dsn, which several instances can share)."
        ),
    ] = "sqlite"
    path: Annotated[
        str, _doc("SQLite database file holding all durable state (backend sqlite).", min_length=1)
    ] = "scale-scheduler.db"
    dsn: Annotated[
        str,
        _doc(
            "PostgreSQL database URL for backend postgresql, e.g. "
            "postgresql://scheduler@db1:5432/scale. Keep the password out of it (use "
            "password_file); one written here is never logged."
        ),
    ] = ""
    password_file: Annotated[
        str,
        _doc(
            "File holding the PostgreSQL password on its first line (read at start-up, never "
            "logged); empty: none, or the server's other ways (.pgpass, PGPASSWORD)."
        ),
    ] = ""
    retention_days: Annotated[
        float,
        _doc(
            "Days a finished task (FINISHED, FAILED, KILLED, LOST, ERROR, DROPPED, GONE, "
            "CANCELED) is kept after it ended; then it is pruned. 0 keeps them whatever their age.",
            ge=0,
        ),
    ] = 30.0
    retention_max_tasks: Annotated[
        int,
        _doc(
            "Finished tasks kept at most: the oldest beyond this many are pruned. 0 sets no "
            "limit. Live tasks are never pruned.",
            ge=0,
        ),
    ] = 10_000_000
    retention_interval: Annotated[
        float,
        _doc(
            "Seconds between two pruning passes (each also checkpoints the WAL and reads the "
            "database's size for the metrics).",
            gt=0,
        ),
    ] = 60.0

    def __repr__(self) -> str:
        # The DSN may hold a password: a repr (a logged config, a traceback) shows it redacted.
        values = msgspec.structs.asdict(self)
        values["dsn"] = redact_dsn(self.dsn)
        return "StateConfig(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"


class HaConfig(_Section, frozen=True):
    lease_seconds: Annotated[
        float,
        _doc(
            "Seconds a leader's term lasts unless renewed; a frozen or cut-off leader is replaced "
            "this long after its last renewal (at once when its process dies).",
            gt=0,
        ),
    ] = 10.0
    renew_seconds: Annotated[
        float,
        _doc(
            "Seconds between two renewals of the leader's lease (and between two attempts of a "
            "standby to take it); less than lease_seconds.",
            gt=0,
        ),
    ] = 2.0
    advertise_url: Annotated[
        str,
        _doc(
            "This instance's API URL as the other instances reach it (they forward requests "
            "there while it leads); empty: http://<the machine's name>:<api.port>/."
        ),
    ] = ""
    instance: Annotated[
        str,
        _doc("This instance's name among the instances; empty: the host name and the API port."),
    ] = ""
    dsn: Annotated[
        str,
        _doc(
            "PostgreSQL database the instances elect their leader in, while state.backend is "
            "sqlite: leadership only, each instance keeps its own state file (for trying "
            "failover; a new leader does not see the old one's queue). With state.backend: "
            "postgresql the election is in state.dsn and this stays empty. Empty: one instance, "
            "always the leader."
        ),
    ] = ""
    password_file: Annotated[
        str,
        _doc("File holding the password of ha.dsn on its first line (read at start-up)."),
    ] = ""

    def __repr__(self) -> str:
        values = msgspec.structs.asdict(self)
        values["dsn"] = redact_dsn(self.dsn)
        return "HaConfig(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"


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
            "under the status update backlog limit, which follows the acknowledgement latency "
            "(grown while every acknowledgement takes under 0.3 s, halved after a later one); "
            "offers left over are declined with no filter (offered again in the next "
            "allocation cycle). 0 turns flow control off.",
            ge=0,
        ),
    ] = 20_000
    max_cluster_failures: Annotated[
        int,
        _doc(
            "Times a task is retried at once after attempts that ended by the cluster's fault "
            "(agent removed or unreachable, task dropped or gone, preempted, master failover); "
            "they do not count against its max_attempts.",
            ge=0,
        ),
    ] = 10
    retry_backoff_initial: Annotated[
        float,
        _doc(
            "Seconds a task waits before its retry after its first failure of its own "
            "(Marathon's backoffSeconds); a task may set its own retry_backoff.",
            ge=0,
            le=MAX_BACKOFF_SECONDS,
        ),
    ] = 1.0
    retry_backoff_factor: Annotated[
        float,
        _doc(
            "Each further failure of its own multiplies the wait by this (Marathon's "
            "backoffFactor).",
            ge=1,
            le=100,
        ),
    ] = 1.15
    retry_backoff_max: Annotated[
        float,
        _doc(
            "Longest wait before a retry, in seconds (Marathon's maxLaunchDelaySeconds).",
            ge=0,
            le=MAX_BACKOFF_SECONDS,
        ),
    ] = 300.0

    @property
    def retry_backoff(self) -> RetryBackoff:
        return RetryBackoff(
            self.retry_backoff_initial, self.retry_backoff_factor, self.retry_backoff_max
        )


class UsageConfig(_Section, frozen=True):
    interval: Annotated[
        float,
        _doc(
            "Seconds between rounds asking every online agent what its containers really use "
            "(GET_CONTAINERS of the agent API, else /monitor/statistics); 0 turns it off "
            "(resources.used then stays zero).",
            ge=0,
        ),
    ] = 15.0
    timeout: Annotated[
        float,
        _doc("Seconds an agent has to answer a usage request; then its usage is unknown.", gt=0),
    ] = 5.0
    concurrency: Annotated[
        int, _doc("Most agents asked for their usage at once.", ge=1, le=1024)
    ] = 32


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    mesos: MesosConfig = msgspec.field(default_factory=MesosConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)
    usage: UsageConfig = msgspec.field(default_factory=UsageConfig)
    ha: HaConfig = msgspec.field(default_factory=HaConfig)

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


def _explain(error: msgspec.ValidationError) -> ConfigError:
    failure = failure_of(error)
    path, detail = failure.path, failure.detail
    if failure.unknown_field is not None:
        key = f"{path}.{failure.unknown_field}" if path else failure.unknown_field
        if not path:
            known = ", ".join(f.name for f in msgspec.structs.fields(Config))
            return ConfigError(f"{key}: unknown section (known sections: {known})", key)
        section = _section_types().get(path.split(".")[0])
        known = ", ".join(f.name for f in msgspec.structs.fields(section)) if section else ""
        return ConfigError(f"{key}: unknown key (known keys in {path}: {known})", key)
    if detail.startswith("Invalid enum value"):
        allowed = next((typ for key, typ, _d, _h in iter_settings() if key == path), "")
        got = detail.removeprefix("Invalid enum value").strip()
        return ConfigError(
            f"{path}: expected one of {allowed.replace(' | ', ', ')}; got {got}", path
        )
    detail = detail.replace("`", "")
    detail = detail[0].lower() + detail[1:] if detail else detail
    return ConfigError(f"{path or '(top level)'}: {detail}", path)


def _env_overrides(
    environ: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The settings given as environment variables, and the variable of each dotted key."""
    overrides: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
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
            value = _read_yaml(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{name}: cannot read the value as YAML: {_yaml_problem(exc)}"
            ) from None
        overrides.setdefault(section, {})[key] = value
        origins[f"{section}.{key}"] = name
    return overrides, origins


@cache
def _choice_keys() -> frozenset[tuple[str, str]]:
    """``(section, key)`` of every setting whose value is one of a fixed set of words."""
    info = msgspec.inspect.type_info(Config)
    assert isinstance(info, msgspec.inspect.StructType)
    keys: set[tuple[str, str]] = set()
    for section in info.fields:
        assert isinstance(section.type, msgspec.inspect.StructType)
        for f in section.type.fields:
            typ = f.type.type if isinstance(f.type, msgspec.inspect.Metadata) else f.type
            if isinstance(typ, msgspec.inspect.LiteralType):
                keys.add((section.name, f.name))
    return frozenset(keys)


def _lower_choices(merged: dict[str, Any]) -> None:
    """Choices in any case (``INFO`` is how Python users write levels); the registry's are lower."""
    for section, key in _choice_keys():
        values = merged.get(section)
        if isinstance(values, dict) and isinstance(values.get(key), str):
            values[key] = values[key].lower()


def parse_config(
    raw: Any, environ: Mapping[str, str] | None = None, source: str | None = None
) -> Config:
    """Validate a mapping (as read from YAML) plus environment overrides into a ``Config``.

    An error names where the bad value came from: its environment variable, else ``source``
    (the file's name), when given.
    """
    overrides, origins = _env_overrides(environ if environ is not None else os.environ)
    try:
        return _validate(raw, overrides)
    except ConfigError as exc:
        origin = origins.get(exc.key.split("[")[0])
        where = f"from {origin}" if origin else f"in {source}" if source else ""
        if not where:
            raise
        raise ConfigError(f"{exc} ({where})", exc.key) from None


def _validate(raw: Any, overrides: dict[str, dict[str, Any]]) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"(top level): expected a mapping of sections, got {type(raw).__name__}")
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for section, values in overrides.items():
        current = merged.get(section)
        if current is None:
            current = merged[section] = {}
        if not isinstance(current, dict):
            raise ConfigError(
                f"{section}: expected a mapping of keys, got {type(current).__name__}", section
            )
        current.update(values)
    for section, values in merged.items():
        if values is None:
            merged[section] = {}
    _lower_choices(merged)
    try:
        config = msgspec.convert(merged, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise _explain(exc) from None
    _check_semantics(config)
    return config


def _check_semantics(config: Config) -> None:
    paths = {
        "state.path": config.state.path,
        "api.token_file": config.api.token_file,
        "mesos.secret_file": config.mesos.secret_file,
        "state.password_file": config.state.password_file,
        "ha.password_file": config.ha.password_file,
    }
    for key, path in paths.items():
        if "\0" in path:  # no file system takes one; os calls raise ValueError
            raise ConfigError(f"{key}: a file name cannot contain a NUL character", key)
    master = config.mesos.master.strip()
    if master.startswith("zk://"):
        hosts, _, path = master[len("zk://") :].partition("/")
        if not hosts or not path:
            raise ConfigError(
                f"mesos.master: expected zk://host:port[,host:port]/path, got {master!r}",
                "mesos.master",
            )
    else:
        for item in master.split(","):
            if not re.fullmatch(r"(https?://)?[A-Za-z0-9_.\-\[\]:]+(:\d+)?/?", item.strip()):
                raise ConfigError(
                    "mesos.master: expected http://host:port, a comma-separated list of them, "
                    f"or zk://host:port/path, got {master!r}",
                    "mesos.master",
                )
    if any(not role.strip() for role in config.mesos.roles):
        raise ConfigError("mesos.roles: expected non-empty role names", "mesos.roles")
    if config.mesos.secret_file and not config.mesos.principal:
        raise ConfigError(
            "mesos.secret_file: set mesos.principal too, or leave both empty", "mesos.secret_file"
        )
    if config.api.read_auth and not config.api.token_file:
        # Refused rather than warned: the operator asked for protected reads, and without a
        # token the daemon would serve every read (and write) to anyone who can connect.
        raise ConfigError(
            "api.read_auth: true needs api.token_file (without a token nothing is protected); "
            "set api.token_file, or remove api.read_auth",
            "api.read_auth",
        )
    backoff = config.scheduler.retry_backoff
    if backoff.problems():
        raise ConfigError(
            "scheduler.retry_backoff_max: expected at least scheduler.retry_backoff_initial "
            f"({backoff.initial:g}), got {backoff.maximum:g}",
            "scheduler.retry_backoff_max",
        )
    _check_state_backend(config.state)
    _check_ha(config)
    for entry in config.api.allowed_hosts:
        if parse_authority(entry) is None:
            raise ConfigError(
                "api.allowed_hosts: expected host names or addresses, each with an optional "
                f":port (no scheme or path), got {entry!r}",
                "api.allowed_hosts",
            )


def _check_state_backend(state: StateConfig) -> None:
    """The PostgreSQL keys go with ``backend: postgresql``; the DSN is named only redacted."""
    if state.backend == "sqlite":
        for key, value in (("state.dsn", state.dsn), ("state.password_file", state.password_file)):
            if value:
                raise ConfigError(
                    f"{key}: only used with state.backend: postgresql (the backend is sqlite); "
                    f"set state.backend: postgresql, or remove {key}",
                    key,
                )
        return
    if not state.dsn.strip():
        raise ConfigError(
            "state.dsn: required with state.backend: postgresql, "
            "e.g. postgresql://scheduler@db1:5432/scale",
            "state.dsn",
        )
    _check_dsn("state", state.dsn, state.password_file)


def _check_dsn(section: str, dsn: str, password_file: str) -> None:
    """``<section>.dsn`` parses, and holds no password beside ``<section>.password_file``."""
    problem = dsn_problem(dsn)
    if problem:
        raise ConfigError(f"{section}.dsn: {problem}; got {redact_dsn(dsn)!r}", f"{section}.dsn")
    if password_file and dsn_has_password(dsn):
        raise ConfigError(
            f"{section}.password_file: {section}.dsn holds a password too; keep the one in the "
            f"file and remove it from {section}.dsn ({redact_dsn(dsn)!r})",
            f"{section}.password_file",
        )


def _check_ha(config: Config) -> None:
    """Renewal well inside the lease; ha.dsn only beside an SQLite backend; a usable URL."""
    ha = config.ha
    if ha.renew_seconds >= ha.lease_seconds:
        raise ConfigError(
            f"ha.renew_seconds: must be less than ha.lease_seconds ({ha.lease_seconds:g}), got "
            f"{ha.renew_seconds:g}; a lease renewed no sooner than it ends lapses between "
            "renewals",
            "ha.renew_seconds",
        )
    if ha.dsn:
        if config.state.backend == "postgresql":
            raise ConfigError(
                "ha.dsn: with state.backend: postgresql the instances elect their leader in "
                "state.dsn; remove ha.dsn",
                "ha.dsn",
            )
        _check_dsn("ha", ha.dsn, ha.password_file)
        if config.api.port == 0 and not ha.advertise_url:
            raise ConfigError(
                "ha.advertise_url: required when api.port is 0 (a port chosen at start-up "
                "cannot be told to the other instances in advance); set api.port or "
                "ha.advertise_url",
                "ha.advertise_url",
            )
    elif ha.password_file:
        raise ConfigError(
            "ha.password_file: only used with ha.dsn; set ha.dsn, or remove ha.password_file",
            "ha.password_file",
        )
    if ha.advertise_url:
        parts = urlsplit(ha.advertise_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError(
                "ha.advertise_url: expected http://host:port/ (how the other instances reach "
                f"this one's API), got {ha.advertise_url!r}",
                "ha.advertise_url",
            )
    if any(ch.isspace() or not ch.isprintable() for ch in ha.instance) or len(ha.instance) > 255:
        raise ConfigError(
            "ha.instance: expected up to 255 printable characters without spaces, "
            f"got {ha.instance!r}",
            "ha.instance",
        )


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
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
        try:
            raw = _read_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_config(raw, environ, source=None if path is None else str(path))


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
    "state": "Durable state: SQLite (WAL, fsync on every commit) or PostgreSQL.",
    "logging": "Structured logs on stdout.",
    "scheduler": "Offer handling and task life-cycle policy.",
    "ha": "High availability: several instances, one leader (PostgreSQL).",
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


def client_host(host: str) -> str:
    """Where a client on this machine reaches an API bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
