"""Every log line's ``timestamp``, formatted once per second (a third of an access-log event's
cost went to ``isoformat``, B4 in ``bench/RESULTS.md``): the same text as structlog's
``TimeStamper(fmt="iso", utc=True)``; and JSON lines render bytes-like values by ``repr``
whatever else the event holds."""

from __future__ import annotations

import datetime
import io
import json
import time

import pytest
import structlog

from scale_scheduler.daemon.service.logging_setup import UtcIsoStamper, configure_logging

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _isoformat_at(nanos: int) -> str:
    """What ``datetime.now(tz=utc).isoformat()`` gives at ``nanos`` (microseconds floored)."""
    moment = EPOCH + datetime.timedelta(microseconds=nanos // 1000)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "nanos",
    [
        1_765_091_237_115_916_123,  # an ordinary moment
        1_765_091_237_000_000_000,  # a whole second: no fraction, as isoformat writes it
        1_765_091_237_000_000_999,  # under a microsecond past it: still none
        1_765_091_237_000_001_000,  # one microsecond
        1_765_091_237_999_999_999,  # the last microsecond of a second
        1_767_225_599_999_999_000,  # the last microsecond of a year
        1_767_225_600_000_000_000,  # the first second of the next one
    ],
)
def test_the_stamp_is_the_isoformat_of_the_moment(
    monkeypatch: pytest.MonkeyPatch, nanos: int
) -> None:
    stamper = UtcIsoStamper()
    # Each second is formatted once: another moment of it before, then this one.
    monkeypatch.setattr(time, "time_ns", lambda: nanos - nanos % 1_000_000_000 + 7_000)
    stamper(None, "info", {})
    monkeypatch.setattr(time, "time_ns", lambda: nanos)
    assert stamper(None, "info", {"event": "e"}) == {
        "event": "e",
        "timestamp": _isoformat_at(nanos),
    }


def test_the_stamp_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    stamper = UtcIsoStamper()
    for nanos in (1_765_091_237_500_000_000, 1_765_091_238_250_000_000, 1_765_091_236_000_000_001):
        monkeypatch.setattr(time, "time_ns", lambda nanos=nanos: nanos)
        assert stamper(None, "info", {})["timestamp"] == _isoformat_at(nanos)


def test_log_lines_carry_structlogs_iso_utc_timestamp() -> None:
    reference = structlog.processors.TimeStamper(fmt="iso", utc=True)
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        before = reference(None, "info", {})["timestamp"]
        structlog.get_logger("test").info("stamped")
        after = reference(None, "info", {})["timestamp"]
    finally:
        configure_logging("info", "console", io.StringIO())
    stamp = json.loads(stream.getvalue())["timestamp"]
    assert stamp.endswith("Z")

    def parse(text: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert parse(before) <= parse(stamp) <= parse(after)


class _Bytes(bytes):
    pass


def test_json_lines_render_every_bytes_like_value_by_repr() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        structlog.get_logger("test").info(
            "raw_values",
            text="t",
            count=3,
            array=bytearray(b"\x01a"),
            view=memoryview(b"\x02b"),
            sub=_Bytes(b"\x03c"),
        )
    finally:
        configure_logging("info", "console", io.StringIO())
    event = json.loads(stream.getvalue())
    assert (event["text"], event["count"]) == ("t", 3)
    assert event["array"] == "b'\\x01a'"
    assert event["view"] == "b'\\x02b'"
    assert event["sub"] == "b'\\x03c'"
