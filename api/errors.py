"""Error rendering and request-body helpers.

The spec wants every error as ``text/plain`` with a message a person can act on. Views raise
``web.HTTPException`` subclasses; the edge middleware (``api.edge``) renders all of them with
``ensure_text``, aiohttp's own 404/405/413 included, and answers anything else with
``error_answer`` (a logged 500 for the unexpected).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
import structlog
from aiohttp import web

from scale_scheduler.api.json_body import BodyError, brief, decode_object, json_kind
from scale_scheduler.api.keys import CONFIG
from scale_scheduler.daemon.scheduling.core_facade import (
    CoreUnavailableError,
    LeaderLiveError,
    MissingRowError,
    StateFencedError,
    StateUnavailableError,
)

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_json_encoder = msgspec.json.Encoder()


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json_encoder.encode(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def text_error(cls: type[web.HTTPException], message: str, **kwargs: Any) -> web.HTTPException:
    """An HTTP error whose body is ``message`` as text/plain."""
    return cls(text=message.rstrip("\n") + "\n", content_type="text/plain", **kwargs)


def bad_request(message: str) -> web.HTTPException:
    return text_error(web.HTTPBadRequest, message)


def not_found(message: str) -> web.HTTPException:
    return text_error(web.HTTPNotFound, message)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (members one level deep, ``json_body``), or 400 saying
    what is wrong with it."""
    try:
        return decode_object(await request.read())
    except BodyError as exc:
        raise bad_request(str(exc)) from None


def check_update_fields(data: dict[str, Any], allowed: Iterable[str]) -> None:
    """The spec's PATCH rules: unexpected fields listed, and at least one field."""
    allowed_set = set(allowed)
    unexpected = [key for key in data if key not in allowed_set]
    if unexpected:
        named = ", ".join(brief(key) for key in unexpected[:10])
        if len(unexpected) > 10:
            named += f" and {len(unexpected) - 10} more"
        raise bad_request(
            f"Unexpected fields: {named}. Allowed fields: {', '.join(sorted(allowed_set))}."
        )
    if not data:
        raise bad_request(
            f"No fields specified for update. Allowed fields: {', '.join(sorted(allowed_set))}."
        )


def require_bool(data: dict[str, Any], field: str) -> bool | None:
    if field not in data:
        return None
    value = data[field]
    if not isinstance(value, bool):
        raise bad_request(
            f"Field {field!r} must be a JSON boolean (true or false), not {json_kind(value)}."
        )
    return value


STATE_UNAVAILABLE_MESSAGE = (
    "The database is unreachable (or this instance no longer leads); nothing was changed. "
    "Retry shortly."
)
STATE_RETRY_AFTER = "2"

_DEFAULT_MESSAGES = {
    404: "Not found: {path}. See the README for the API's endpoints.",
    405: "Method {method} is not allowed on {path}.",
}


def error_answer(exc: Exception, request: web.Request) -> web.HTTPException | None:
    """The text/plain answer to an exception a view (or a check before it) raised, other than an
    ``HTTPException`` (``ensure_text`` completes those); None to let it propagate unchanged.
    Call it in the ``except`` block: a 500 logs the traceback."""
    if isinstance(exc, CoreUnavailableError):
        return text_error(web.HTTPServiceUnavailable, str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, LeaderLiveError):
        return text_error(
            web.HTTPServiceUnavailable,
            f"{exc.holder} leads now; nothing was changed here. Retry shortly.",
            headers={"Retry-After": STATE_RETRY_AFTER},
        )
    if isinstance(exc, (StateUnavailableError, StateFencedError)):
        # Not committed: nothing was acknowledged, so the client may simply retry.
        log.warning("state_unavailable", path=request.path, error=str(exc))
        return text_error(
            web.HTTPServiceUnavailable,
            STATE_UNAVAILABLE_MESSAGE,
            headers={"Retry-After": STATE_RETRY_AFTER},
        )
    if isinstance(exc, MissingRowError):
        log.error("database_row_missing", path=request.path, error=str(exc))
        return text_error(web.HTTPInternalServerError, str(exc))
    if isinstance(exc, ConnectionResetError):
        if not _client_gone(request):
            return None
        # The client closed its connection mid-request (typically while sending the body): its
        # doing, not a failure of the daemon, and nobody is left to read an answer.
        log.info("request_aborted", method=request.method, path=brief(request.path))
        return text_error(
            web.HTTPBadRequest, "The client closed the connection before the request was read."
        )
    log.exception("request_failed", method=request.method, path=request.path)
    return text_error(
        web.HTTPInternalServerError, "Internal server error; the daemon's log has the details."
    )


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def ensure_text(exc: web.HTTPException, request: web.Request) -> None:
    """Give aiohttp's own errors (404, 405, 413, ...) a useful text/plain body."""
    own = (
        exc.content_type == "text/plain" and exc.text and not exc.text.startswith(f"{exc.status}:")
    )
    if own and exc.status != 413:  # aiohttp's 413 text names no setting: always replaced
        return
    if exc.status == 413:
        limit = request.app[CONFIG].api.max_body_bytes
        message = f"The request body is too large: the limit is {limit} bytes (api.max_body_bytes)."
    else:
        template = _DEFAULT_MESSAGES.get(exc.status)
        message = (
            template.format(path=brief(request.path), method=brief(request.method))
            if template
            else (exc.text or exc.reason)
        )
    if exc.status == 405 and "Allow" in exc.headers:
        message += f" Allowed: {exc.headers['Allow']}."
    exc.text = message + "\n"
    exc.content_type = "text/plain"
