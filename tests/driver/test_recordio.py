"""RecordIO framing over awkward chunkings, on aiohttp's and asyncio's stream readers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from unittest import mock

import aiohttp
import pytest

from scale_scheduler.daemon.mesos.recordio import (
    MalformedLengthError,
    RecordIOError,
    RecordReader,
    RecordTooLargeError,
    TruncatedRecordError,
)

CAP = 1 << 20


def frame(*payloads: bytes) -> bytes:
    return b"".join(b"%d\n%s" % (len(p), p) for p in payloads)


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def aiohttp_reader() -> aiohttp.StreamReader:
    protocol = mock.Mock(_reading_paused=False)
    return aiohttp.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())


async def read_all(
    chunks: Sequence[bytes], *, cap: int = CAP, use_asyncio: bool = False
) -> list[bytes]:
    """Feed ``chunks`` one at a time while the reader waits, then EOF; return the records."""
    stream: aiohttp.StreamReader | asyncio.StreamReader
    stream = asyncio.StreamReader() if use_asyncio else aiohttp_reader()
    reader = RecordReader(stream, cap)

    async def feed() -> None:
        for chunk in chunks:
            stream.feed_data(chunk)
            await asyncio.sleep(0)
        stream.feed_eof()

    feeder = asyncio.ensure_future(feed())
    records: list[bytes] = []
    try:
        while (record := await reader.read()) is not None:
            records.append(record)
    finally:
        await feeder
    assert reader.records == len(records)
    return records


PAYLOADS = [b'{"type":"HEARTBEAT"}', b'{"type":"SUBSCRIBED","x":"' + b"y" * 300 + b'"}', b"{}"]
DATA = frame(*PAYLOADS)


@pytest.mark.parametrize("use_asyncio", [False, True], ids=["aiohttp", "asyncio"])
@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([], id="all-records-in-one-chunk"),
        pytest.param([1], id="length-line-split-after-first-digit"),
        pytest.param([2], id="split-before-newline"),
        pytest.param([3], id="split-right-after-newline"),
        pytest.param([10, 30, 200], id="record-split-across-chunks"),
        pytest.param(list(range(1, len(DATA))), id="one-byte-chunks"),
        pytest.param([len(frame(PAYLOADS[0])) + 2], id="second-length-line-split"),
    ],
)
async def test_records_survive_any_chunking(cuts: list[int], use_asyncio: bool) -> None:
    assert await read_all(split_at(DATA, cuts), use_asyncio=use_asyncio) == PAYLOADS


async def test_many_records_in_one_chunk() -> None:
    payloads = [b'{"n":%d}' % i for i in range(500)]
    assert await read_all([frame(*payloads)]) == payloads


async def test_large_record_in_small_chunks() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    data = frame(payload, b"after")
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    assert await read_all(chunks, cap=2 << 20) == [payload, b"after"]


async def test_empty_stream_is_a_clean_end() -> None:
    assert await read_all([]) == []


@pytest.mark.parametrize("use_asyncio", [False, True], ids=["aiohttp", "asyncio"])
@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"12x\n{}", MalformedLengthError, id="not-a-number"),
        pytest.param(b"\n{}", MalformedLengthError, id="empty-length"),
        pytest.param(b"-2\n{}", MalformedLengthError, id="negative"),
        pytest.param(b"1" * 25 + b"\n", MalformedLengthError, id="absurdly-long-length"),
        pytest.param(b"%d\n" % (CAP + 1), RecordTooLargeError, id="over-the-cap"),
        pytest.param(b"10\n{}", TruncatedRecordError, id="eof-inside-payload"),
        pytest.param(frame(b"{}") + b"12", TruncatedRecordError, id="eof-inside-length"),
    ],
)
async def test_bad_framing_raises(
    data: bytes, error: type[RecordIOError], use_asyncio: bool
) -> None:
    with pytest.raises(error):
        await read_all(split_at(data, [1]), use_asyncio=use_asyncio)


async def test_length_line_without_newline_is_malformed() -> None:
    # A garbage stream with no newline must not be buffered forever.
    with pytest.raises(MalformedLengthError):
        await read_all([b"7" * 200_000])


async def test_error_message_names_the_record() -> None:
    with pytest.raises(MalformedLengthError, match="record 2"):
        await read_all([frame(b"{}") + b"zz\n"])
