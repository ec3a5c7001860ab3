"""Where a request body's bytes become values: every body the API takes is decoded here.

Two ways in, and one set of failures:

- ``decode_typed(decoder, body)``: a msgspec decoder of the body's own type (``POST /queue/``'s
  tasks), the fast path;
- ``decode_shallow(body)``: any JSON, decoded one level deep: the top-level value and, for a
  top-level object or array, its members. Members that are arrays or objects keep their own
  members as ``msgspec.Raw`` (undecoded bytes). The PATCH bodies are read this way, and a task
  that failed the typed path is looked at this way to say what is wrong with it.

No client value nested deeper than that ever becomes a Python object, so no code of ours walks
client data recursively. What msgspec does at depth is skip (a raw value) or refuse (a typed
one); its skip is recursive in C and refuses nesting past the interpreter's recursion limit
(about 1,000 levels) with ``RecursionError``, which is turned into a 400 here like every other
failure: an empty body, bytes that are not JSON, a number beyond a 64-bit float.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

JsonScalar = str | int | float | bool | None
_Member = JsonScalar | list[msgspec.Raw] | dict[str, msgspec.Raw]
Shallow = JsonScalar | list[msgspec.Raw] | dict[str, _Member]
"""A JSON value decoded one level deep (see the module's docstring)."""

_shallow_decoder: msgspec.json.Decoder[Shallow] = msgspec.json.Decoder(Shallow)

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


def decode_shallow(body: bytes) -> Shallow:
    """Any JSON value, one level deep; ``BodyError`` if the bytes are no JSON value."""
    try:
        return decode_typed(_shallow_decoder, body)
    except msgspec.ValidationError:  # the type takes every JSON value: only a number is left
        raise NumberOutOfRange(OUT_OF_RANGE) from None


def decode_object(body: bytes) -> dict[str, _Member]:
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
    if isinstance(value, list):
        return "an array"
    return "an object"


def brief(text: str) -> str:
    """``text`` cut to ``ECHO_LIMIT`` characters, so no message echoes an unbounded value."""
    return text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "..."
