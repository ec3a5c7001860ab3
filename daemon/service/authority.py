"""Parsing an HTTP authority (``host[:port]``, as in a ``Host`` header or an ``Origin``).

Strict on purpose: what it returns is compared with the daemon's own names, so anything a
browser would not send for a real host (spaces, user info, paths, empty labels) is refused.
"""

from __future__ import annotations

import ipaddress
import re

_AUTHORITY = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def parse_authority(text: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; None if invalid.

    The host comes back lower-case, without a trailing dot, and an IPv6 address without its
    brackets in its compressed form (``[0:0::1]`` is ``::1``); the port is None when absent.
    """
    match = _AUTHORITY.fullmatch(text)
    if match is None:
        return None
    port_text = match.group("port")
    port = int(port_text) if port_text is not None else None
    if port is not None and not 0 < port <= 65535:
        return None
    ipv6 = match.group("ipv6")
    if ipv6 is not None:
        try:
            return ipaddress.IPv6Address(ipv6).compressed, port
        except ValueError:
            return None
    name = match.group("name").lower().removesuffix(".")
    if not name or ".." in name:
        return None
    return name, port


def format_host(host: str) -> str:
    """``host`` as it appears in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host
