"""What a ``msgspec.ValidationError`` says, in parts: where, and what is wrong there.

msgspec 0.23's ``ValidationError`` carries no path attribute: the path is only in its message
(``Expected `int` >= 1 - at `$.max_attempts```). This is the one place that reads that wording;
the request bodies (``api/task_body``) and the configuration (``daemon/config``) build their own
messages from the parts. ``tests/foundation/test_validation_failure.py`` pins the wording this
expects, so a msgspec that words it otherwise fails there first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

_LOCATION = re.compile(r" - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`$")
_UNKNOWN = "Object contains unknown field `"
_MISSING = "Object missing required field `"


@dataclass(frozen=True, slots=True)
class ValidationFailure:
    detail: str
    """msgspec's message without the location: ``Expected `int` >= 1``."""
    path: str
    """Where, as msgspec writes it after ``$.``: ``container.image``, ``env[...]`` (a value of a
    mapping), ``items[0]``, ``[3]``; empty for the top-level value."""
    in_key: bool = False
    """The fault is in one of the keys of the mapping at ``path``, not in a value."""
    unknown_field: str | None = None
    """The field an object at ``path`` must not have."""
    missing_field: str | None = None
    """The field an object at ``path`` lacks."""

    @property
    def field(self) -> str:
        """``path`` without the ``[...]`` of a mapping's value: the field a message names."""
        return self.path.replace("[...]", "")


def failure_of(error: msgspec.ValidationError) -> ValidationFailure:
    text = str(error)
    match = _LOCATION.search(text)
    detail = text[: match.start()] if match else text
    path = match.group("path").removeprefix(".") if match else ""
    named = detail.removesuffix("`")
    return ValidationFailure(
        detail=detail,
        path=path,
        in_key=bool(match and match.group("key")),
        unknown_field=named.removeprefix(_UNKNOWN) if detail.startswith(_UNKNOWN) else None,
        missing_field=named.removeprefix(_MISSING) if detail.startswith(_MISSING) else None,
    )
