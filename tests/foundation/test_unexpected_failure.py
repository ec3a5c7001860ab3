"""Exit status 1 is "anything else": a failure no other status names (a bug, or a resource
failing in a way nothing maps). Every cause known to happen has its own status, so no
configuration provokes 1 in the real process; these tests fail start-up through the app's
public hooks instead and check the mapping: status 1, ONE ``daemon_fatal`` line with the
traceback, one line on stderr."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from aiohttp import web

from scale_scheduler.api.app import build_app
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.service import serve


async def test_an_unexpected_start_up_failure_exits_1_and_is_logged_once(
    make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    app = build_app(config, connect_mesos=False)

    async def broken_component(app: web.Application) -> None:
        raise RuntimeError("a component that cannot start")

    app.on_startup.append(broken_component)
    with structlog.testing.capture_logs() as logs:
        status = await serve(config, app=app)
    assert status is ExitCode.FAILURE
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["daemon_fatal"]
    fatal = errors[0]
    assert (fatal["exit_code"], fatal["reason"]) == (1, "FAILURE")
    message = "start-up failed: RuntimeError('a component that cannot start')"
    assert fatal["message"] == message
    assert isinstance(fatal["exc_info"], RuntimeError)  # rendered as its traceback
    assert capsys.readouterr().err == f"scale-scheduler: error: {message}\n"
