"""``failure_of`` reads real msgspec errors: if a msgspec release words them otherwise, this
fails before any 400 or configuration message goes wrong."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from scale_scheduler.daemon.service.validation_failure import ValidationFailure, failure_of


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    image: str


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    env: dict[Annotated[str, msgspec.Meta(max_length=2)], str] = {}
    inner: Inner | None = None
    items: list[Inner] = []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"count": 0}', ValidationFailure("Expected `int` >= 1", "count")),
        (
            b'{"env": {"abc": "x"}}',
            ValidationFailure("Expected `str` of length <= 2", "env", in_key=True),
        ),
        (b'{"env": {"a": 1}}', ValidationFailure("Expected `str`, got `int`", "env[...]")),
        (
            b'{"inner": {"x`y": 1}}',
            ValidationFailure("Object contains unknown field `x`y`", "inner", unknown_field="x`y"),
        ),
        (
            b'{"inner": {}}',
            ValidationFailure(
                "Object missing required field `image`", "inner", missing_field="image"
            ),
        ),
        (
            b'{"items": [{"image": 1}]}',
            ValidationFailure("Expected `str`, got `int`", "items[0].image"),
        ),
        (b"[1]", ValidationFailure("Expected `object`, got `array`", "")),
        (
            b'{"other": 1}',
            ValidationFailure("Object contains unknown field `other`", "", unknown_field="other"),
        ),
    ],
)
def test_the_parts_of_real_msgspec_errors(body: bytes, expected: ValidationFailure) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=Outer)
    assert failure_of(caught.value) == expected


def test_field_is_the_path_without_a_mappings_value_marker() -> None:
    assert ValidationFailure("x", "env[...]").field == "env"
    assert ValidationFailure("x", "items[0].image").field == "items[0].image"


def test_a_top_level_list_item() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b'[{"image": 1}]', type=list[Inner])
    assert failure_of(caught.value) == ValidationFailure("Expected `str`, got `int`", "[0].image")
