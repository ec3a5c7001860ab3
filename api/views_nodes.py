"""``/nodes/``: the agents the scheduler knows, and their own pause and active flags.

Served from the scheduling core's memory (by a standby with no leader: from the database).
``PATCH`` follows the same rules as ``/scheduler/`` (object body, at least one field, unexpected
fields listed, wrong types named); unpausing clears ``pause_reason``. A node's flags are
separate from the scheduler's global pause.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from scale_scheduler.api import limits
from scale_scheduler.api.errors import (
    bad_request,
    check_update_fields,
    json_response,
    not_found,
    read_json_object,
    require_bool,
)
from scale_scheduler.api.json_body import json_kind
from scale_scheduler.api.keys import CORE
from scale_scheduler.api.pagination import envelope, page_of
from scale_scheduler.daemon.scheduling.core_facade import FlagChange, NodeNotFoundError, NodeView

_PauseReason = Annotated[
    str,
    msgspec.Meta(
        max_length=limits.MAX_PAUSE_REASON, extra_json_schema={"pattern": limits.PRINTABLE}
    ),
]


class NodeUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """All optional, at least one required, no others. Unpausing clears pause_reason."""

    is_paused: bool | msgspec.UnsetType = msgspec.UNSET
    pause_reason: _PauseReason | msgspec.UnsetType | None = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


UPDATABLE = tuple(field.name for field in msgspec.structs.fields(NodeUpdate))


async def _node(request: web.Request) -> NodeView:
    digits = request.match_info["node_id"].lstrip("0") or "0"
    try:
        if len(digits) > 19:  # no such id, and int() refuses very long digit strings
            raise NodeNotFoundError(digits)
        return await request.app[CORE].node(int(digits))
    except NodeNotFoundError:
        raise not_found(f"No node with id {digits}.") from None


async def list_nodes(request: web.Request) -> web.Response:
    page = page_of(request)
    count, views = await request.app[CORE].node_page(
        page.offset, page.size, hostname=request.query.get("hostname")
    )
    return json_response(envelope(request, page, count, views))


async def get_node(request: web.Request) -> web.Response:
    return json_response(await _node(request))


def _pause_reason(data: dict[str, Any]) -> str | None:
    """``pause_reason``: null, or printable text of at most ``limits.MAX_PAUSE_REASON``."""
    reason = data.get("pause_reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_request(
            f"Field 'pause_reason' must be a JSON string or null, not {json_kind(reason)}."
        )
    if reason is not None and len(reason) > limits.MAX_PAUSE_REASON:
        raise bad_request(
            f"Field 'pause_reason' is invalid: expected at most {limits.MAX_PAUSE_REASON} "
            f"characters, not {len(reason)}."
        )
    if reason is not None and not limits.text_ok(limits.PRINTABLE, reason):
        raise bad_request(
            f"Field 'pause_reason' is invalid: expected {limits.RULES[limits.PRINTABLE]}."
        )
    return reason


def _update(data: dict[str, Any]) -> NodeUpdate:
    """The PATCH body, checked field by field so that each 400 names its problem."""
    check_update_fields(data, UPDATABLE)
    is_paused = require_bool(data, "is_paused")
    is_active = require_bool(data, "is_active")
    return NodeUpdate(
        is_paused=msgspec.UNSET if is_paused is None else is_paused,
        pause_reason=_pause_reason(data) if "pause_reason" in data else msgspec.UNSET,
        is_active=msgspec.UNSET if is_active is None else is_active,
    )


def _given(value: Any) -> Any:
    return None if value is msgspec.UNSET else value


async def patch_node(request: web.Request) -> web.Response:
    node = await _node(request)
    update = _update(await read_json_object(request))
    change = FlagChange(
        is_paused=_given(update.is_paused),
        is_active=_given(update.is_active),
        set_reason=update.pause_reason is not msgspec.UNSET,
        pause_reason=_given(update.pause_reason),
    )
    try:
        view = await request.app[CORE].set_node_flags(node.id, change)
    except NodeNotFoundError:
        raise not_found(f"No node with id {node.id}.") from None
    return json_response(view)
