"""RecordIO framing of the Mesos event stream: ``<decimal length>\\n<exactly that many bytes>``.

``RecordReader`` reads one record at a time from a byte stream (an aiohttp response's
``content`` or an ``asyncio.StreamReader``): the length line with ``readuntil(b"\\n")``, then the
payload with ``readexactly(n)``, so chunk boundaries never matter and no buffer is re-sliced.
A malformed length, a record over the size cap or a stream that ends mid-record raise a
``RecordIOError`` subclass; the caller closes the stream.

This module knows framing only: not JSON, not events, not HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp.http_exceptions import HttpProcessingError

# A length line longer than this cannot be a sane record length (20 digits ~ 10**20 bytes).
MAX_LENGTH_DIGITS = 20


class ByteStream(Protocol):
    async def readuntil(self, separator: bytes = b"\n") -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...


class RecordIOError(Exception):
    """The stream is not valid RecordIO any more; it must be closed."""


class MalformedLengthError(RecordIOError):
    """The length line is not a decimal number."""


class RecordTooLargeError(RecordIOError):
    """A record announces more bytes than the configured cap."""


class TruncatedRecordError(RecordIOError):
    """The stream ended in the middle of a record."""


class RecordReader:
    """Reads RecordIO records from ``stream``; ``read()`` returns ``None`` at a clean end."""

    def __init__(self, stream: ByteStream, max_record_bytes: int) -> None:
        self._stream = stream
        self._max = max_record_bytes
        self.records = 0

    async def read(self) -> bytes | None:
        line = await self._read_length_line()
        if line is None:
            return None
        digits = line[:-1]
        if not digits or len(digits) > MAX_LENGTH_DIGITS or not digits.isdigit():
            raise MalformedLengthError(
                f"record {self.records + 1}: malformed length line {bytes(line[:40])!r}"
            )
        length = int(digits)
        if length > self._max:
            raise RecordTooLargeError(
                f"record {self.records + 1}: {length} bytes exceeds the cap of {self._max}"
            )
        try:
            payload = await self._stream.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise TruncatedRecordError(
                f"record {self.records + 1}: stream ended after {len(exc.partial)} "
                f"of {length} bytes"
            ) from None
        self.records += 1
        return payload

    async def _read_length_line(self) -> bytes | None:
        try:
            line = await self._stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # asyncio.StreamReader at EOF
            line = exc.partial
        except asyncio.LimitOverrunError as exc:
            raise MalformedLengthError(
                f"record {self.records + 1}: no newline after a length line of "
                f"{exc.consumed}+ bytes"
            ) from None
        except (ValueError, HttpProcessingError) as exc:  # aiohttp: line over the reader's limit
            raise MalformedLengthError(
                f"record {self.records + 1}: length line too long ({exc})"
            ) from None
        if not line:
            return None
        if not line.endswith(b"\n"):  # aiohttp returns the partial line at EOF
            if len(line) > MAX_LENGTH_DIGITS:
                raise MalformedLengthError(
                    f"record {self.records + 1}: malformed length line {bytes(line[:40])!r}"
                )
            raise TruncatedRecordError(
                f"record {self.records + 1}: stream ended inside the length line {line!r}"
            )
        return line
