"""Huge arrays in a body (review of issue 14, N1): a batch is refused at its element
``MAX_BATCH + 1`` and an array member is never decoded element by element, so a 16 MB array of
8 million zeros costs what a valid batch costs instead of half a gigabyte.

Deterministic: bytes that are no JSON placed after the element past the limit show that the
decoder stopped there (it would otherwise say "not valid JSON").
"""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web

from scale_scheduler.api.json_body import (
    BodyError,
    BoundedArray,
    TooManyItems,
    decode_object,
    decode_shallow,
    json_kind,
)
from scale_scheduler.api.task_body import MAX_BATCH, decode_tasks

NOT_JSON = b"this is not JSON"


def test_a_bounded_array_stops_at_the_element_past_its_limit() -> None:
    split = BoundedArray(3).split
    assert [bytes(raw) for raw in split(b' [1, {"a": [2]}, "x"] ')] == [b"1", b'{"a": [2]}', b'"x"']
    assert split(b"[]") == []
    with pytest.raises(TooManyItems):
        split(b"[0,0,0,0," + NOT_JSON)  # element 4 refused before the garbage is read
    with pytest.raises(BodyError, match="not valid JSON"):
        split(b"[0,0," + NOT_JSON)
    with pytest.raises(BodyError, match="Expected a JSON array, not an object"):
        split(b'{"a": 1}')


async def test_a_batch_past_the_limit_is_refused_unread() -> None:
    body = b"[" + b"0," * (MAX_BATCH + 1) + NOT_JSON
    with pytest.raises(web.HTTPBadRequest) as refused:
        await decode_tasks(body)
    assert refused.value.text == f"A batch holds at most {MAX_BATCH} tasks; this one has more.\n"


@pytest.mark.parametrize("member", [b"[0,0,0]", b'{"a": [0, 0]}'])
def test_array_and_object_members_stay_undecoded(member: bytes) -> None:
    fields = decode_object(b'{"is_paused": ' + member + b', "n": 1.5, "s": "x", "b": null}')
    assert isinstance(fields["is_paused"], msgspec.Raw)
    assert bytes(fields["is_paused"]) == member
    assert (fields["n"], fields["s"], fields["b"]) == (1.5, "x", None)
    kind = "an array" if member.startswith(b"[") else "an object"
    assert json_kind(fields["is_paused"]) == kind


def test_a_top_level_array_stays_undecoded_and_is_still_checked() -> None:
    value = decode_shallow(b" [0, [1], {}] ")
    assert isinstance(value, msgspec.Raw)
    assert json_kind(value) == "an array"
    with pytest.raises(BodyError, match="not valid JSON"):
        decode_shallow(b'{"a": [0, 0,' + NOT_JSON + b"]}")
    with pytest.raises(BodyError, match="not valid JSON"):
        decode_shallow(b"[0, 0," + NOT_JSON)
