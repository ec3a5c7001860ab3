"""Configure structlog once, in the entry point: JSON lines or a readable console renderer.

The daemon's own events are rendered by structlog and written straight to the stream (no
standard-library ``LogRecord`` per event: that path cost ~55 us an event, the direct one about a
third of it, and state changes are logged per task: B2 in ``bench/RESULTS.md``). Standard-library
loggers (aiohttp, aiosqlite, kazoo, pymesos) go through the same processors via
``ProcessorFormatter``, so every line on stdout has the same shape. ``set_level`` changes both.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import msgspec
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def use_json(fmt: str, stream: Any = None) -> bool:
    if fmt == "auto":
        stream = stream or sys.stdout
        return not (hasattr(stream, "isatty") and stream.isatty())
    return fmt == "json"


class TurnFlush:
    """Flushes a stream once per turn of the event loop instead of once per line.

    A flush is a system call (stdout is a pipe or a file), and the daemon writes a line per API
    request and per task state change: under load, one turn of the loop handles many of them
    (B4 in ``bench/RESULTS.md``: the access log's flush was a sixth of a ``/status/``
    request). The first line of a turn schedules the flush for the start of the next one, so a
    line waits at most one turn. Outside a running loop (start-up, worker threads, the CLI),
    every line is flushed at once, as before."""

    __slots__ = ("_flush", "_scheduled_on")

    def __init__(self) -> None:
        self._flush: Callable[[], None] | None = None
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def attach(self, flush: Callable[[], None]) -> None:
        """The stream's flush (under its writers' lock); given by its first writer."""
        if self._flush is None:
            self._flush = flush

    def after_write(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop.is_closed():
            if self._flush is not None:
                self._flush()
            return
        if self._scheduled_on is loop:
            return
        self._scheduled_on = loop
        loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._scheduled_on = None
        if self._flush is not None:
            self._flush()


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's line writer with the logger's name (for ``add_logger_name``), flushing once
    per loop turn (``TurnFlush``)."""

    def __init__(self, file: TextIO, name: str, turn_flush: TurnFlush) -> None:
        super().__init__(file)
        self.name = name
        self._turn_flush = turn_flush
        turn_flush.attach(self._flush_locked)

    def _flush_locked(self) -> None:
        with self._lock:
            self._flush()

    def msg(self, message: str) -> None:
        with self._lock:
            self._write(message + "\n")
        self._turn_flush.after_write()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _NamedWriteLoggerFactory:
    """One writer per logger name (structlog asks for one on every event of a lazy logger)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._loggers: dict[str, _NamedWriteLogger] = {}
        self._turn_flush = TurnFlush()

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = str(args[0]) if args else ""
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers[name] = _NamedWriteLogger(self._stream, name, self._turn_flush)
        return logger


_json_encoder = msgspec.json.Encoder(enc_hook=repr)


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
"""Value types that cannot be bytes: an event holding only these is encoded as it is."""


def _json_dumps(event: dict[str, Any], **_kw: Any) -> str:
    """One event as a JSON line, by msgspec (a third of the standard library's cost per event).

    Objects JSON has no type for are rendered with ``repr``, as structlog's default does; bytes
    too (msgspec would write them as Base64). Most events hold strings and numbers only, told
    in one pass in C (the access log writes one per API request: B4 in ``bench/RESULTS.md``).
    """
    if not _PLAIN_TYPES.issuperset(map(type, event.values())):
        for key, value in event.items():
            if isinstance(value, (bytes, bytearray, memoryview)):
                event[key] = repr(bytes(value))
    return _json_encoder.encode(event).decode()


class UtcIsoStamper:
    """``structlog.processors.TimeStamper(fmt="iso", utc=True)``, formatting each second once.

    The same ``timestamp`` (``2026-12-07T07:47:17.115916Z``; no fraction at a whole second, as
    ``datetime.isoformat`` writes it), at a third of the cost: ``isoformat`` with a time zone
    was a third of an access-log event, which every API request writes (B4 in
    ``bench/RESULTS.md``). Safe in any thread: the second and its text are swapped together.
    """

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, _logger: Any, _name: str, event_dict: Any) -> Any:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        cached = self._second
        if cached[0] != second:
            text = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
            cached = (second, text.strftime("%Y-%m-%dT%H:%M:%S"))
            self._second = cached
        micros = nanos // 1000
        event_dict["timestamp"] = f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"
        return event_dict


def _takes_unicode(stream: Any) -> bool:
    """True unless the stream encodes text in something other than UTF-8 (e.g. ASCII)."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True  # an in-memory text stream
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        UtcIsoStamper(),
        structlog.processors.StackInfoRenderer(),
    ]
    if use_json(fmt, stream):
        # msgspec writes UTF-8 (no ASCII escapes): only where the stream takes it.
        renderer: Any = (
            structlog.processors.JSONRenderer(serializer=_json_dumps)
            if _takes_unicode(stream)
            else structlog.processors.JSONRenderer()
        )
        # Tracebacks without frame locals: a local may hold a token or the Mesos secret.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_NamedWriteLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    # aiohttp's own access log is replaced by ours (one structured event per request).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(_LEVELS[level])
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]))
