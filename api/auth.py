"""Optional bearer-token authentication of the REST API.

The token is read once at start-up from ``api.token_file`` (in a worker thread, before the store
opens); an unreadable or empty file is a ``ConfigError`` naming the key, so the daemon exits 2.
With a token set, every write (any method but GET, HEAD and OPTIONS) needs
``Authorization: Bearer <token>``; reads need it too when ``api.read_auth`` is true. A request
without the right token gets 401 with ``WWW-Authenticate: Bearer`` and a ``text/plain`` message.

Two path lists, here and nowhere else, make the exceptions: ``PROBE_PATHS`` (health probes and
the metrics scrape) are reads whatever the method, open unless ``api.read_auth`` is on;
``PUBLIC_PATHS`` (the dashboard's page and static assets, which hold no data) are always open to
reads, so a browser can load the page that then asks for the token. This module is the one place
that decides who may call what; it owns the token and never logs it (nor the header carrying it).
A request with more than one ``Authorization`` header is refused (400), token or not.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import hdrs, web

from scale_scheduler.api.errors import bad_request, text_error
from scale_scheduler.api.keys import CONFIG
from scale_scheduler.daemon.service.config import ApiConfig, ConfigError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Health probes and the metrics scrape: open like reads (any method) unless ``api.read_auth``."""
PUBLIC_PATHS = frozenset({"/", "/dashboard.css", "/dashboard.js"})
"""Static files without data: always open to reads, ``api.read_auth`` or not."""

REALM = "scale-scheduler"


class ApiToken:
    """The bearer token the API expects (``repr`` never shows it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.encode("utf-8")

    def matches(self, presented: str) -> bool:
        """Constant-time comparison with the token a request presented."""
        try:
            candidate = presented.encode("utf-8", "surrogateescape")  # the bytes that were sent
        except UnicodeError:
            return False
        return hmac.compare_digest(self._value, candidate)

    def __repr__(self) -> str:
        return "ApiToken(<hidden>)"


API_TOKEN = web.AppKey("api_token", ApiToken)


def read_token_file(path: str) -> ApiToken:
    """The token in ``path`` (surrounding whitespace dropped); blocking, meant for a thread."""
    loaded = _load_token(path)
    if isinstance(loaded, str):
        # Raised here, not where the token was a local variable: a logged traceback that shows
        # locals (structlog's dict tracebacks do) must never hold it.
        raise ConfigError(f"api.token_file: {loaded}")
    return loaded


def _load_token(path: str) -> ApiToken | str:
    """The token, or what is wrong with the file (never raises)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return f"{path} is not UTF-8 text"
    token = text.strip()
    if not token:
        return f"{path} is empty"
    if any(char.isspace() or not char.isprintable() for char in token):
        return f"{path} must hold one token without spaces or control characters"
    return ApiToken(token)


def auth_enabled(api: ApiConfig) -> bool:
    return bool(api.token_file)


def requires_token(api: ApiConfig, method: str, path: str) -> bool:
    """Whether a request needs the token under this configuration (before looking at it)."""
    if not auth_enabled(api):
        return False
    read = method.upper() in READ_METHODS
    if read and path in PUBLIC_PATHS:
        return False
    if api.read_auth:
        return True
    return not read and path not in PROBE_PATHS


async def token_context(app: web.Application) -> AsyncIterator[None]:
    """Read the token at start-up (off the event loop); nothing to release afterwards."""
    api = app[CONFIG].api
    if auth_enabled(api):
        app[API_TOKEN] = await asyncio.to_thread(read_token_file, api.token_file)
    yield


def _presented_token(request: web.Request) -> str | None:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _unauthorized(message: str, challenge: str) -> web.HTTPException:
    return text_error(web.HTTPUnauthorized, message, headers={hdrs.WWW_AUTHENTICATE: challenge})


def check_token(request: web.Request) -> None:
    """401 unless the request presents the API token."""
    presented = _presented_token(request)
    if presented is None:
        raise _unauthorized(
            "Authentication required: send the API token as 'Authorization: Bearer <token>' "
            "(the daemon reads it from api.token_file).",
            f'Bearer realm="{REALM}"',
        )
    if not request.app[API_TOKEN].matches(presented):
        raise _unauthorized(
            "The bearer token is not valid.",
            f'Bearer realm="{REALM}", error="invalid_token"',
        )


def check_single_authorization(request: web.Request) -> None:
    """400 for a request carrying several ``Authorization`` headers: which one counts would
    depend on who reads them (a proxy may check the first, this daemon another)."""
    count = len(request.headers.getall(hdrs.AUTHORIZATION, []))
    if count > 1:
        raise bad_request(f"Send one Authorization header; this request has {count}.")


def authenticate(request: web.Request, api: ApiConfig) -> None:
    """One ``Authorization`` header at most (400), and the token where this configuration
    requires one (401)."""
    check_single_authorization(request)
    # The token is read in check_token's own frame and returned nowhere, so no local variable
    # of the edge middleware (on the stack while the view runs, and in any traceback it
    # raises) holds a presented token.
    if requires_token(api, request.method, request.path):
        check_token(request)
