"""One structured access-log event per request (``http_request``), written by the edge middleware.

Every API request pays for this line, and dashboards poll ``/status/`` while the offer stream
keeps the loop busy (B4 in ``bench/RESULTS.md``), so it is written through a bound logger kept
between requests: structlog's lazy logger assembles a new one for every event (the daemon leaves
``cache_logger_on_first_use`` off so that a new level or configuration acts at once), which was
a third of this event's cost. The kept logger is rebuilt whenever structlog's configuration is
replaced, so it follows ``set_level`` and a reconfiguration just as the lazy one does.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

LOGGER_NAME = "scale_scheduler.api.access"


class AccessLog:
    """The access-log event, through a bound logger kept while the configuration stands."""

    __slots__ = ("_config", "_logger", "_proxy")

    def __init__(self) -> None:
        self._proxy = structlog.get_logger(LOGGER_NAME)
        self._config: tuple[Any, ...] | None = None
        self._logger: Any = None

    def _current(self) -> Any:
        config = structlog.get_config()
        # The processor list is compared by identity: structlog's test capture edits it in place,
        # which a kept logger (holding that same list) sees without a rebuild.
        key = (
            id(config["processors"]),
            config["wrapper_class"],
            config["logger_factory"],
            config["context_class"],
        )
        if key != self._config or self._logger is None:
            self._logger = self._proxy.bind()
            self._config = key
        return self._logger

    def request(self, request: web.Request, status: int, seconds: float) -> None:
        self._current().info(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(seconds * 1000, 3),
        )
