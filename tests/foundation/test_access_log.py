"""The access log keeps its bound logger between requests (B4), yet follows every change of the
logging configuration at once, as structlog's lazy loggers do: a new stream, a new level (SIGHUP),
a test's capture."""

from __future__ import annotations

import io
import json

from aiohttp.test_utils import make_mocked_request
from structlog.testing import capture_logs

from scale_scheduler.api.access_log import AccessLog
from scale_scheduler.daemon.service.logging_setup import configure_logging, set_level


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_kept_logger_follows_streams_levels_and_captures() -> None:
    access = AccessLog()
    request = make_mocked_request("GET", "/status/")
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    access.request(request, 200, 0.001)
    configure_logging("info", "json", second)
    access.request(request, 201, 0.002)
    set_level("warning")
    access.request(request, 202, 0.003)  # below the level: dropped
    set_level("info")
    access.request(request, 203, 0.004)
    with capture_logs() as captured:
        access.request(request, 204, 0.005)
    access.request(request, 205, 0.006)
    assert [(e["event"], e["status"]) for e in _events(first)] == [("http_request", 200)]
    assert [e["status"] for e in _events(second)] == [201, 203, 205]
    assert _events(second)[0] | {"timestamp": None} == {
        "event": "http_request",
        "method": "GET",
        "path": "/status/",
        "status": 201,
        "duration_ms": 2.0,
        "level": "info",
        "logger": "scale_scheduler.api.access",
        "timestamp": None,
    }
    assert [(e["event"], e["status"]) for e in captured] == [("http_request", 204)]
