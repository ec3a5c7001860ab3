"""Frozen settings of a simulated cluster: masters, agents, intervals and task defaults.

Owns `SimConfig` and `AgentSpec` plus the parsers for the command-line forms of ports and
attributes. Durations are seconds (floats) everywhere. Nothing here starts anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from scale_scheduler.simulator.resources import Range, normalize_ranges


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What one simulated agent offers. `{i}` in hostname/attribute values is its index."""

    cpus: float = 4.0
    mem: float = 8192.0
    disk: float = 65536.0
    gpus: float = 0.0
    ports: tuple[Range, ...] = ((31000, 32000),)
    attributes: tuple[tuple[str, str], ...] = ()
    hostname: str = "sim-agent-{i}"


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a `SimulatedCluster` needs. Use `dataclasses.replace` or keyword overrides."""

    host: str = "127.0.0.1"
    port: int = 0  # first master's port; 0 picks free ports
    masters: int = 1
    agents: int = 3
    agent: AgentSpec = field(default_factory=AgentSpec)
    seed: int | None = None
    heartbeat_interval: float = 15.0
    allocation_interval: float = 1.0
    offer_timeout: float | None = None
    task_duration: float = 5.0
    task_start_delay: float = 0.05  # launch -> RUNNING (STARTING half-way)
    kill_delay: float = 0.05  # KILLING -> KILLED
    status_update_retry: float = 10.0  # first resend of an unacknowledged update; doubles
    status_update_retry_max: float = 600.0
    agent_reregister_delay: float = 0.2  # after a failover, agents re-register this late
    default_refuse_seconds: float = 5.0
    max_completed_tasks: int = 1000  # per framework, for GET_TASKS
    credentials: tuple[tuple[str, str], ...] = ()  # (principal, secret); empty = no auth
    zk: str | None = None  # zk://host:port[,host:port]/path
    zk_session_timeout: float = 10.0
    agent_port: int = 0  # the agents' HTTP endpoint (each agent under /slave(N)); 0: a free port
    task_cpu_usage: float = 0.25  # share of its CPUs a task uses (label sim.cpus_used: CPUs)
    task_mem_usage: float = 0.5  # share of its memory (label sim.mem_used: MiB)
    task_disk_usage: float = 0.1  # share of its disk (label sim.disk_used: MiB)
    disk_usage_isolation: bool = True  # the agents run the disk/du isolator (disk_used_bytes)

    def __post_init__(self) -> None:
        if self.masters < 1:
            raise ValueError("masters must be >= 1")
        if self.agents < 0:
            raise ValueError("agents must be >= 0")
        for name in ("heartbeat_interval", "allocation_interval", "kill_delay"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.task_duration < 0:
            raise ValueError("task_duration must be >= 0")
        for name in ("task_cpu_usage", "task_mem_usage", "task_disk_usage"):
            if not 0 <= getattr(self, name) <= 10:
                raise ValueError(f"{name} must be between 0 and 10")
        if self.zk is not None:
            parse_zk_url(self.zk)


def parse_ports(text: str) -> tuple[Range, ...]:
    """`31000-32000,33000-33100` -> ((31000, 32000), (33000, 33100)); empty text -> ()."""
    out: list[Range] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        begin, sep, end = part.partition("-")
        try:
            b = int(begin)
            e = int(end) if sep else b
        except ValueError:
            raise ValueError(f"bad port range {part!r}") from None
        if b > e or b < 0 or e > 65535:
            raise ValueError(f"bad port range {part!r}")
        out.append((b, e))
    return normalize_ranges(out)


def parse_attributes(text: str) -> tuple[tuple[str, str], ...]:
    """Mesos agent syntax `rack:r{i%4};zone:west` -> (("rack", "r{i%4}"), ("zone", "west"))."""
    out: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition(":")
        if not sep or not name:
            raise ValueError(f"bad attribute {part!r}, expected name:value")
        out.append((name.strip(), value.strip()))
    return tuple(out)


_PLACEHOLDER = re.compile(r"\{i(?:%(\d+))?\}")


def expand(template: str, index: int) -> str:
    """Replace `{i}` with the agent index and `{i%N}` with index modulo N."""

    def sub(m: re.Match[str]) -> str:
        mod = m.group(1)
        return str(index % int(mod)) if mod else str(index)

    return _PLACEHOLDER.sub(sub, template)


def attribute_json(name: str, value: str) -> dict[str, Any]:
    """A Mesos `Attribute`: numbers are SCALAR, everything else TEXT."""
    try:
        number = float(value)
    except ValueError:
        return {"name": name, "type": "TEXT", "text": {"value": value}}
    return {"name": name, "type": "SCALAR", "scalar": {"value": number}}


def parse_zk_url(url: str) -> tuple[str, str]:
    """`zk://h1:2181,h2:2181/mesos` -> ("h1:2181,h2:2181", "/mesos")."""
    if not url.startswith("zk://"):
        raise ValueError(f"ZooKeeper URL must start with zk://, got {url!r}")
    rest = url[len("zk://") :]
    hosts, slash, path = rest.partition("/")
    if not hosts or not slash or not path:
        raise ValueError(f"ZooKeeper URL needs hosts and a path, got {url!r}")
    return hosts, "/" + path.rstrip("/")
