"""``state.dsn``: what a usable one looks like, and how to show one without its password.

A DSN is a URL, ``postgresql://user@host:port/database`` (``postgres://`` too), as asyncpg
reads it: several ``host:port`` pairs separated by commas, or ``?host=/dir`` for a unix socket,
are allowed. The password belongs in ``state.password_file``; one written in the DSN
(``user:secret@`` or ``?password=``) still works, but is never shown: ``redact_dsn`` replaces it
wherever a DSN is logged or named in an error.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

SCHEMES = ("postgresql", "postgres")
HIDDEN = "***"
EXAMPLE = "postgresql://user@host:5432/database"

_QUERY_PASSWORD = re.compile(r"(^|&)((?:ssl)?password)=[^&]*")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-%]*)(?::(\d*))?$")


def _split(dsn: str) -> tuple[str, str, str, str, str] | None:
    """``(scheme, userinfo, hosts, path, query)`` or None when ``dsn`` is not a URL."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return None
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    return scheme, userinfo, hosts, (slash + path), query


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password in it replaced by ``***`` (text that is no URL is hidden whole,
    as it might be a password typed in the wrong place)."""
    parts = _split(dsn)
    if parts is None:
        return HIDDEN if dsn else ""
    scheme, userinfo, hosts, path, query = parts
    user, colon, _password = userinfo.partition(":")
    shown = f"{scheme}://"
    if userinfo:
        shown += f"{user}:{HIDDEN}@" if colon else f"{user}@"
    shown += hosts + path
    if query:
        shown += "?" + _QUERY_PASSWORD.sub(rf"\1\2={HIDDEN}", query)
    return shown


def dsn_has_password(dsn: str) -> bool:
    parts = _split(dsn)
    if parts is None:
        return False
    _scheme, userinfo, _hosts, _path, query = parts
    query_keys = {key for key, _value in parse_qsl(query, keep_blank_values=True)}
    return ":" in userinfo or "password" in query_keys


def dsn_problem(dsn: str) -> str:
    """What is wrong with ``dsn`` (never quoting its password), or ``""`` when it is usable."""
    parts = _split(dsn.strip())
    if parts is None or parts[0].lower() not in SCHEMES:
        return f"expected a URL such as {EXAMPLE}"
    _scheme, _userinfo, hosts, path, query = parts
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        return "its query (after '?') is not key=value pairs joined by '&'"
    if not hosts and not params.get("host"):
        return f"no host: expected {EXAMPLE}, or ?host=/socket/dir for a unix socket"
    for item in hosts.split(",") if hosts else []:
        match = _HOST_PORT.match(item)
        if match is None or not match.group(1):
            return f"{item!r} is not host or host:port"
        port = match.group(2)
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            return f"{item!r}: the port must be a number from 1 to 65535"
    database = unquote(path.lstrip("/"))
    if "/" in database:
        return f"the database name {database!r} cannot contain '/'"
    return ""


def describe_target(dsn: str) -> str:
    """``host:port/database`` of ``dsn``, for messages about reaching it."""
    parts = _split(dsn)
    if parts is None:
        return HIDDEN
    _scheme, _userinfo, hosts, path, query = parts
    params = dict(parse_qsl(query, keep_blank_values=True))
    where = hosts or params.get("host", "")
    return where + (path if path not in ("", "/") else "")
