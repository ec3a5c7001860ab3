"""Logging: one JSON object per line, and tracebacks never carry frame locals (secrets)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import structlog

from scale_scheduler.daemon.service.logging_setup import configure_logging


def _fail_with_a_secret_in_a_local() -> None:
    secret = "s3cr3t-token-value"  # noqa: F841  (a local the traceback must not show)
    raise RuntimeError("boom")


def _log_failure() -> None:
    try:
        _fail_with_a_secret_in_a_local()
    except RuntimeError:
        structlog.get_logger("test").exception("it_failed", task_id=7)


def test_json_tracebacks_leave_out_locals() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        _log_failure()
        logging.getLogger("aiohttp.server").error("stdlib_line")
    finally:
        configure_logging("info", "console", io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["it_failed", "stdlib_line"]
    failure = lines[0]
    assert failure["task_id"] == 7
    assert failure["exception"][0]["exc_type"] == "RuntimeError"
    assert "s3cr3t-token-value" not in stream.getvalue()


def test_console_tracebacks_leave_out_locals() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        _log_failure()
    finally:
        configure_logging("info", "console", io.StringIO())
    text = stream.getvalue()
    assert "it_failed" in text
    assert "RuntimeError: boom" in text
    assert "s3cr3t-token-value" not in text


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_json_lines_keep_every_value_readable() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        structlog.get_logger("test").info(
            "odd_values", text="Zürich ✓", raw=b"\x00ab", thing=_Opaque(), nested={"n": [1, 2.5]}
        )
    finally:
        configure_logging("info", "console", io.StringIO())
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["text"] == "Zürich ✓"
    assert event["raw"] == "b'\\x00ab'"  # repr, as structlog's default renders bytes
    assert event["thing"] == "<opaque>"
    assert event["nested"] == {"n": [1, 2.5]}


def test_json_lines_on_an_ascii_stream_escape_non_ascii() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    configure_logging("info", "json", stream)
    try:
        structlog.get_logger("test").info("odd_values", text="Zürich")
    finally:
        configure_logging("info", "console", io.StringIO())
    line = raw.getvalue().decode("ascii").strip()
    assert json.loads(line)["text"] == "Zürich"
    assert "\\u00fc" in line


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_lines_of_one_loop_turn_share_one_flush_at_the_next_turn() -> None:
    stream = _CountingStream()
    configure_logging("info", "json", stream)
    try:
        log = structlog.get_logger("test")
        for n in range(3):
            log.info("in_one_turn", n=n)
        assert stream.flushes == 0  # written, the flush is scheduled for the next turn
        assert len(stream.getvalue().splitlines()) == 3
        await asyncio.sleep(0)  # not a wait: lets the loop run one turn
        assert stream.flushes == 1
        log.info("next_turn")
        await asyncio.sleep(0)  # not a wait: lets the loop run one turn
        assert stream.flushes == 2
    finally:
        configure_logging("info", "console", io.StringIO())


def test_lines_outside_a_running_loop_are_flushed_at_once() -> None:
    stream = _CountingStream()
    configure_logging("info", "json", stream)
    try:
        structlog.get_logger("test").info("at_start_up")
        assert stream.flushes == 1
    finally:
        configure_logging("info", "console", io.StringIO())
