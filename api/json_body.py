"""Where a request body's bytes become values: every body the API takes is decoded here.

Three ways in, and one set of failures:

- ``decode_typed(decoder, body)``: a msgspec decoder of the body's own type (``POST /queue/``'s
  tasks), the fast path;
- ``decode_shallow(body)``: any JSON, decoded one level deep: a scalar, or a top-level object's
  members. An array, at the top or as a member, and an object member stay ``msgspec.Raw``
  (undecoded bytes, checked to be JSON): ``json_kind`` names them. The PATCH bodies are read
  this way, and a task that failed the typed path is looked at this way to say what is wrong.
- ``BoundedArray(n).split(body)``: a JSON array split into at most ``n`` undecoded elements
  (a batch of tasks), refused at its element ``n + 1``: msgspec stops there, so a 16 MB array
  of 8 million zeros costs no more than one of ``n`` elements.

No array's elements and no value nested deeper than one level ever become Python objects: no
code of ours walks client data recursively, and a huge array costs a parse, not memory. (A
top-level object's members do become one each.) What msgspec does at depth is skip (a raw
value) or refuse (a typed one); its skip is recursive in C and refuses nesting past the
interpreter's recursion limit (about 1,000 levels) with ``RecursionError``, which is turned
into a 400 here like every other failure: an empty body, bytes that are not JSON, a number
beyond a 64-bit float.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar, cast

import msgspec

T = TypeVar("T")

JsonScalar = str | int | float | bool | None
Member = JsonScalar | msgspec.Raw
"""An object's member: a scalar, or an array or object kept undecoded."""
Shallow = JsonScalar | msgspec.Raw | dict[str, Member]
"""A JSON value decoded one level deep (see the module's docstring)."""

_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_scalar_object_decoder: msgspec.json.Decoder[dict[str, JsonScalar]] = msgspec.json.Decoder(
    dict[str, JsonScalar]
)
_scalar_decoder: msgspec.json.Decoder[JsonScalar] = msgspec.json.Decoder(JsonScalar)
_first_byte = re.compile(rb"[ \t\r\n]*(.)", re.DOTALL)

EMPTY = "The request body is empty; send a JSON object."
TOO_DEEP = "The request body nests arrays or objects too deeply."
OUT_OF_RANGE = (
    "The request body holds a number out of range (JSON numbers must fit a 64-bit float)."
)


class BodyError(ValueError):
    """A body that cannot be decoded; the message says why (the API answers it with 400)."""


class NumberOutOfRange(BodyError):
    """A JSON number beyond a 64-bit float (or an integer of more digits than that)."""


def decode_typed(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """``decoder.decode(body)``; a ``msgspec.ValidationError`` is the caller's to explain."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError:  # a subclass of DecodeError
        raise
    except msgspec.DecodeError as exc:
        raise BodyError(not_json(exc)) from None
    except RecursionError:
        raise BodyError(TOO_DEEP) from None


def decode_shallow(body: bytes | msgspec.Raw) -> Shallow:
    """Any JSON value, one level deep; ``BodyError`` if the bytes are no JSON value."""
    opening = _opening(body)
    if opening == b"{":
        return _members(body)
    if opening == b"[":
        return decode_typed(_raw_decoder, body)  # checked to be JSON, its elements not built
    return _scalar(body)


def _opening(value: bytes | msgspec.Raw) -> bytes:
    """The first byte of a JSON text past its whitespace (``b""`` if none)."""
    found = _first_byte.match(memoryview(value))
    return found.group(1) if found else b""


def _members(body: bytes | msgspec.Raw) -> dict[str, Member]:
    """An object's members: all scalars in one pass in C (the usual case); otherwise each
    member's bytes, arrays and objects kept as they are (checked, skipped, not built)."""
    try:
        return cast(dict[str, Member], decode_typed(_scalar_object_decoder, body))
    except msgspec.ValidationError:  # an array or object member, or a number out of range
        pass
    members = decode_typed(_object_decoder, body)
    return {
        key: value if bytes(memoryview(value)[:1]) in (b"[", b"{") else _scalar(value)
        for key, value in members.items()  # a member's bytes start at its value
    }


def _scalar(value: bytes | msgspec.Raw) -> JsonScalar:
    try:
        return decode_typed(_scalar_decoder, value)
    except msgspec.ValidationError:  # the type takes every scalar: only a number is left
        raise NumberOutOfRange(OUT_OF_RANGE) from None


def decode_object(body: bytes) -> dict[str, Member]:
    """A body that must be a JSON object (the PATCH bodies), its members one level deep."""
    if not body.strip():
        raise BodyError(EMPTY)
    data = decode_shallow(body)
    if not isinstance(data, dict):
        raise BodyError(f"The request body must be a JSON object, not {json_kind(data)}.")
    return data


def not_json(exc: msgspec.DecodeError) -> str:
    return f"The request body is not valid JSON: {exc}."


ECHO_LIMIT = 40
"""A message quotes at most this many characters of a client's value."""


def json_kind(value: Any) -> str:
    """How a message names a decoded value: ``the number 5``, ``an array`` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {brief(str(value))}"
    if isinstance(value, str):
        return f"the string {brief(value)!r}"
    if isinstance(value, list) or (isinstance(value, msgspec.Raw) and _opening(value) == b"["):
        return "an array"
    return "an object"


class TooManyItems(BodyError):
    """An array of more elements than allowed (how many more is not counted)."""


class BoundedArray:
    """Splits a JSON array into at most ``limit`` undecoded elements (``msgspec.Raw``).

    The array is decoded as a struct of ``limit`` optional positions (``array_like``, unknown
    trailing elements forbidden): msgspec refuses it at element ``limit + 1`` without reading
    further, where a ``list`` would be built whole before its length could be checked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        positions = msgspec.defstruct(
            f"ArrayOfAtMost{limit}",
            [(f"item{index}", msgspec.Raw, msgspec.UNSET) for index in range(limit)],
            array_like=True,
            forbid_unknown_fields=True,
            gc=False,
        )
        self._decoder = msgspec.json.Decoder(positions)

    def split(self, body: bytes) -> list[msgspec.Raw]:
        """The elements; ``TooManyItems`` past the limit, ``BodyError`` if not a JSON array."""
        try:
            items = msgspec.structs.astuple(decode_typed(self._decoder, body))
        except msgspec.ValidationError as exc:
            if _opening(body) == b"[":
                raise TooManyItems(str(exc)) from None
            raise BodyError(
                f"Expected a JSON array, not {json_kind(decode_shallow(body))}."
            ) from None
        count = items.index(msgspec.UNSET) if msgspec.UNSET in items else len(items)
        return list(items[:count])


def brief(text: str) -> str:
    """``text`` cut to ``ECHO_LIMIT`` characters, so no message echoes an unbounded value."""
    return text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "..."
