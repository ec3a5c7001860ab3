"""Accept errors logged once per burst.

When the process runs out of file descriptors, asyncio's listening socket fails ``accept()``
with EMFILE and reports it through the loop's exception handler as "socket.accept() out of
system resource", once per attempt and for every queued connection: tens of thousands of lines
(with tracebacks) in seconds. ``install_accept_error_log`` puts a handler in front of the loop's
that turns those into one ``api_accept_failed`` warning per burst (``BurstLog``) and passes
everything else on unchanged.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

import structlog

from scale_scheduler.daemon.service.burst_log import BurstLog

log = structlog.get_logger(__name__)

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def is_accept_resource_error(context: dict[str, Any]) -> bool:
    exc = context.get("exception")
    return (
        isinstance(exc, OSError)
        and exc.errno in RESOURCE_ERRNOS
        and str(context.get("message", "")).startswith("socket.accept()")
    )


def install_accept_error_log(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Route ``loop``'s accept resource errors through a ``BurstLog``; returns the undo."""
    previous = loop.get_exception_handler()
    burst = BurstLog(log, "api_accept_failed")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_accept_resource_error(context):
            exc = context["exception"]
            burst.note(
                error=errno.errorcode.get(exc.errno, str(exc.errno)),
                detail=f"{exc.strerror}: the open-file limit is reached; new connections wait",
            )
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return lambda: loop.set_exception_handler(previous)
