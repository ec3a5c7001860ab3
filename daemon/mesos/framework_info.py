"""The FrameworkInfo this daemon subscribes with, and its HTTP credentials, built from config.

Pure functions over ``Config`` (plus the user and host name, which the caller resolves), so the
native driver and a pymesos adapter subscribe with exactly the same FrameworkInfo. Reading the
secret file is the only I/O here (``read_credentials``, meant for a worker thread at start-up).

This module does not talk to Mesos and never logs the secret.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from scale_scheduler.daemon.mesos.mesos_types import Value
from scale_scheduler.daemon.service.config import Config, MesosConfig

MULTI_ROLE = "MULTI_ROLE"
PARTITION_AWARE = "PARTITION_AWARE"
TASK_KILLING_STATE = "TASK_KILLING_STATE"
GPU_RESOURCES = "GPU_RESOURCES"

_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


class Capability(msgspec.Struct, frozen=True):
    type: str


class FrameworkInfo(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """``mesos.v1.FrameworkInfo`` in its JSON form (the fields this daemon sets)."""

    user: str
    name: str
    failover_timeout: float
    checkpoint: bool
    roles: list[str]
    capabilities: list[Capability]
    hostname: str
    webui_url: str
    id: Value | None = None
    principal: str | None = None

    def with_id(self, framework_id: str | None) -> FrameworkInfo:
        return msgspec.structs.replace(
            self, id=Value(framework_id) if framework_id is not None else None
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready builtins (what pymesos takes)."""
        out = msgspec.to_builtins(self)
        assert isinstance(out, dict)
        return out


class CredentialsError(Exception):
    """The secret file cannot be used; the message names the setting, never the secret."""


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic credentials sent on every request to the master."""

    principal: str
    secret: str = field(repr=False)

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        token = base64.b64encode(f"{self.principal}:{self.secret}".encode()).decode("ascii")
        return f"Basic {token}"


def capabilities(mesos: MesosConfig) -> list[Capability]:
    names = [MULTI_ROLE, PARTITION_AWARE, TASK_KILLING_STATE]
    if mesos.gpu_resources:
        names.append(GPU_RESOURCES)
    return [Capability(name) for name in names]


def api_url_from_config(config: Config, hostname: str) -> str:
    """``http://<api.host>:<api.port>/``, with ``hostname`` when the API listens on a wildcard."""
    host = config.api.host.strip()
    if host in _WILDCARD_HOSTS:
        host = hostname
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.api.port}/"


def build_framework_info(
    config: Config,
    *,
    user: str,
    hostname: str,
    api_url: str,
    framework_id: str | None = None,
) -> FrameworkInfo:
    """The FrameworkInfo for ``config``; ``webui_url`` is ``mesos.webui_url`` or ``api_url``."""
    mesos = config.mesos
    return FrameworkInfo(
        user=user,
        name=mesos.framework_name,
        failover_timeout=mesos.failover_timeout,
        checkpoint=True,
        roles=list(mesos.roles),
        capabilities=capabilities(mesos),
        hostname=hostname,
        webui_url=mesos.webui_url or api_url,
        id=Value(framework_id) if framework_id is not None else None,
        principal=mesos.principal or None,
    )


def read_credentials(mesos: MesosConfig) -> Credentials | None:
    """Credentials from ``mesos.principal`` and ``mesos.secret_file`` (blocking file read).

    A principal without a secret file authenticates nothing: it is only named in FrameworkInfo.
    """
    if not mesos.principal or not mesos.secret_file:
        return None
    try:
        secret = Path(mesos.secret_file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise CredentialsError(
            f"mesos.secret_file: cannot read {mesos.secret_file}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError:
        raise CredentialsError(f"mesos.secret_file: {mesos.secret_file} is not UTF-8") from None
    if not secret:
        raise CredentialsError(f"mesos.secret_file: {mesos.secret_file} is empty")
    return Credentials(mesos.principal, secret)
