"""The names this daemon answers to, for the ``Host`` and ``Origin`` checks of
``api.request_guard``.

A browser tricked by DNS rebinding sends the attacker's name in ``Host``; a page of another site
sends its own origin in ``Origin``. Both are refused unless they name this daemon: its API
address, the machine's host name and FQDN, ``mesos.hostname``, ``mesos.webui_url``'s and
``ha.advertise_url``'s host (where the other instances forward requests while this one leads),
``localhost`` and the loopback addresses when the API listens on loopback or on every address,
the address the connection actually arrived on, and ``api.allowed_hosts``.

The names are resolved once at start-up, in a worker thread (the FQDN may need DNS).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from scale_scheduler.api.keys import CONFIG, SCHEDULER_HOSTNAME
from scale_scheduler.daemon.service.authority import format_host, parse_authority
from scale_scheduler.daemon.service.config import Config

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class OwnNames:
    names: frozenset[str]
    """Accepted on the port the connection arrived on."""
    any_port: frozenset[str]
    """``api.allowed_hosts`` entries without a port: accepted with any port."""
    pinned: frozenset[tuple[str, int]]
    """Accepted with exactly this port (``api.allowed_hosts`` with a port, ``webui_url``)."""

    def allows(self, host: str, port: int, local_ip: str, local_port: int) -> bool:
        """Whether ``host:port`` names this daemon, for a connection that arrived on
        ``local_ip:local_port`` (``host`` and ``local_ip`` as ``parse_authority`` gives them)."""
        if host in self.any_port or (host, port) in self.pinned:
            return True
        return port == local_port and (host in self.names or host == local_ip)


def _is_loopback_or_wildcard(host: str) -> bool:
    if host in WILDCARD_HOSTS or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_own_names(config: Config) -> OwnNames:
    """Every name of this daemon under ``config`` (blocking: may ask DNS; run it in a thread)."""
    api, mesos = config.api, config.mesos
    names: set[str] = set()
    pinned: set[tuple[str, int]] = set()
    any_port: set[str] = set()

    def add(raw: str) -> None:
        parsed = parse_authority(raw.strip())
        if parsed is not None:
            names.add(parsed[0])

    bind = api.host.strip()
    if _is_loopback_or_wildcard(bind):
        names |= LOOPBACK_NAMES
    if bind not in WILDCARD_HOSTS:
        add(bind if ":" not in bind or bind.startswith("[") else f"[{bind}]")
    for name in (socket.gethostname(), socket.getfqdn(), mesos.hostname):
        if name:
            add(name)
    # The webui URL, and the URL the other instances forward to while this one leads.
    for url in (mesos.webui_url, config.ha.advertise_url):
        if not url:
            continue
        parts = urlsplit(url.strip())
        host = parse_authority(parts.netloc.rpartition("@")[2])
        if host is not None:
            names.add(host[0])
            pinned.add((host[0], host[1] or DEFAULT_PORTS.get(parts.scheme, 80)))
    for entry in api.allowed_hosts:
        parsed = parse_authority(entry.strip())
        if parsed is None:
            continue  # refused by config validation already
        if parsed[1] is None:
            any_port.add(parsed[0])
        else:
            pinned.add((parsed[0], parsed[1]))
    return OwnNames(frozenset(names), frozenset(any_port), frozenset(pinned))


def local_address(request: web.Request) -> tuple[str, int] | None:
    """The address and port the request's connection arrived on (not client-controlled)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return None
    return _normalized(sockname)


@functools.lru_cache(maxsize=64)
def _normalized(sockname: tuple[Any, ...]) -> tuple[str, int] | None:
    """A socket's own address as ``parse_authority`` writes hosts (cached: the daemon listens on
    a few addresses, and parsing one is most of the Host check's cost per request)."""
    try:
        address = ipaddress.ip_address(sockname[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed, int(sockname[1])


def own_url(request: web.Request, path: str) -> str:
    """``path`` on the daemon's own base URL, never on the request's ``Host``: ``api.host`` (the
    scheduler's host name when listening on every address) and the port the request arrived
    on (the bound one, also when ``api.port`` is 0)."""
    api = request.app[CONFIG].api
    local = local_address(request)
    port = local[1] if local is not None else api.port
    host = api.host.strip()
    if host in WILDCARD_HOSTS:
        host = request.app[SCHEDULER_HOSTNAME]
    return f"http://{format_host(host)}:{port}{path}"
