"""Cross-site and DNS-rebinding defence, and the security headers of every response.

A browser on the operator's machine can reach the API on loopback. Two ways a hostile page could
use it, and the rule that stops each:

- **Cross-site requests.** A page may send "simple" requests (a form post, ``fetch`` with
  ``mode: "no-cors"``) to any address without a preflight. Those can only carry
  ``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data``: a request
  that changes something (POST, PUT, PATCH, DELETE) and has a body must say
  ``Content-Type: application/json`` (415 otherwise), which no browser sends cross-origin
  without a CORS preflight the daemon never grants. Browsers also say where a request comes
  from: a change whose ``Origin`` is not the daemon's own (``null`` included), or whose
  ``Sec-Fetch-Site`` is anything but ``same-origin`` or ``none``, is refused (403).
- **DNS rebinding.** A page of ``evil.example`` whose name is re-pointed at 127.0.0.1 becomes
  same-origin with the daemon as far as the browser knows, but its requests still carry
  ``Host: evil.example``. Every request, reads included, must name the daemon in ``Host``
  (``api.own_names``) or gets 421 Misdirected Request (RFC 9110: the server is not willing to
  answer for that authority), distinct from the 400s of bad bodies.

The headers (``SECURITY_HEADERS``) keep the dashboard out of frames, scripts to the daemon's own
files, and browsers from sniffing a JSON or text answer into HTML.
"""

from __future__ import annotations

import asyncio
import functools

from aiohttp import hdrs, web

from scale_scheduler.api.errors import text_error
from scale_scheduler.api.json_body import brief
from scale_scheduler.api.keys import CONFIG
from scale_scheduler.api.own_names import DEFAULT_PORTS, OwnNames, local_address, resolve_own_names
from scale_scheduler.daemon.service.authority import parse_authority

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPE = "application/json"
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # the page's empty favicon is a data: URL
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

OWN_NAMES = web.AppKey("own_names", OwnNames)


def _shown(value: str) -> str:
    """A client-sent value quoted for an error message, cut short."""
    return repr(brief(value))


def _misdirected(message: str) -> web.HTTPException:
    return text_error(web.HTTPMisdirectedRequest, message)


def _cross_origin(message: str) -> web.HTTPException:
    return text_error(
        web.HTTPForbidden,
        f"{message} Changes must come from the daemon's own pages or from a client that is "
        "not a browser.",
    )


@functools.lru_cache(maxsize=256)
def _parsed_host(value: str) -> tuple[str, int | None] | None:
    """``parse_authority`` of a ``Host`` value; cached, as clients send the same few."""
    return parse_authority(value)


def check_host(request: web.Request, names: OwnNames) -> None:
    """421 unless the request's one ``Host`` header names this daemon."""
    values = request.headers.getall(hdrs.HOST, [])
    if len(values) != 1:
        raise _misdirected(
            f"Send exactly one Host header naming this daemon (this request has {len(values)})."
        )
    parsed = _parsed_host(values[0])
    local = local_address(request)
    if (
        parsed is None
        or local is None
        or not names.allows(parsed[0], parsed[1] or DEFAULT_PORTS["http"], *local)
    ):
        raise _misdirected(
            f"This daemon does not answer to the host {_shown(values[0])} (Host header). Use "
            "its own address or name, or add the name to api.allowed_hosts."
        )


def check_origin(request: web.Request, names: OwnNames) -> None:
    """403 if a browser says the request comes from another origin or site."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in SAME_ORIGIN_FETCH_SITES:
        raise _cross_origin(f"Cross-site request refused (Sec-Fetch-Site: {_shown(site)}).")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return
    scheme, sep, authority = origin.partition("://")
    parsed = parse_authority(authority) if sep and scheme in DEFAULT_PORTS else None
    local = local_address(request)
    if (
        parsed is None
        or local is None
        or not names.allows(parsed[0], parsed[1] or DEFAULT_PORTS[scheme], *local)
    ):
        raise _cross_origin(
            f"Cross-origin request refused: Origin {_shown(origin)} is not this daemon's own."
        )


def check_content_type(request: web.Request) -> None:
    """415 unless a body is declared ``application/json`` (UTF-8, the only JSON encoding)."""
    if not request.body_exists:
        return
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if declared is None:
        raise text_error(
            web.HTTPUnsupportedMediaType,
            f"The request has a body but no Content-Type: send JSON with "
            f"'Content-Type: {JSON_TYPE}'.",
        )
    media, *params = declared.split(";")
    charsets = [
        value.strip().strip('"').lower()
        for key, _, value in (param.partition("=") for param in params)
        if key.strip().lower() == "charset"
    ]
    if media.strip().lower() != JSON_TYPE or any(c != "utf-8" for c in charsets):
        raise text_error(
            web.HTTPUnsupportedMediaType,
            f"Unsupported Content-Type {_shown(declared)}: send JSON with "
            f"'Content-Type: {JSON_TYPE}'.",
        )


def guard(request: web.Request, names: OwnNames) -> None:
    """The checks of this module, in order: ``Host`` (421) for every request; for a change,
    ``Origin`` and ``Sec-Fetch-Site`` (403), then ``Content-Type`` (415)."""
    check_host(request, names)
    # A request no route takes (404, 405) changes nothing: its own error says more than 415.
    if request.method in MUTATING_METHODS and request.match_info.http_exception is None:
        check_origin(request, names)
        check_content_type(request)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


async def resolve_names(app: web.Application) -> None:
    """The daemon's names, looked up once at start-up, off the loop."""
    app[OWN_NAMES] = await asyncio.to_thread(resolve_own_names, app[CONFIG])


def setup_request_guard(app: web.Application) -> None:
    """Resolve the names at start-up and add the headers to every answer (``guard`` runs in the
    edge middleware, ``api.edge``)."""
    app.on_startup.append(resolve_names)
    app.on_response_prepare.append(add_security_headers)
