"""What the API accepts of a client's values: every bound and character rule, in one place.

The README's "Limits" lists these. Resources stay within what one Mesos agent can have; strings
within what Mesos, a shell and a log line handle; nothing a client sends can grow a message, a
log line or a waiting reason without bound.

- ``cpus`` from ``MIN_CPUS`` (Mesos keeps scalar resources to three decimal places: less rounds
  to nothing) to ``MAX_CPUS``. ``mem`` from ``MIN_MEM`` MiB (a fraction of one MiB holds no
  process; Mesos adds its executor's own 32 MiB on top) and ``mem``/``disk`` up to ``MAX_MIB``
  (16 TiB). ``gpus`` up to ``MAX_GPUS``. Every number is finite.
- A task's ``name`` and a node's ``pause_reason`` are printable text (no control characters:
  NUL, ESC, CR, LF ...), shown on dashboards and in logs. ``command``, env values, labels and
  constraints may hold any character but NUL (a command is a shell script, lines and all); an
  env name is a shell variable name; a container image is printable ASCII without spaces.

The character rules are JSON Schema patterns (ECMA regex: ``$`` is the end of the string) and
are checked with ``fullmatch``, which means the same in Python. msgspec's own ``pattern``
searches with Python's ``$``, which also matches before a final newline, so these are not
given to msgspec but checked by ``text_ok``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

MIN_CPUS = 0.001
MAX_CPUS = 4096.0
MIN_MEM = 1.0
MAX_MIB = 16 * 1024 * 1024  # 16 TiB, for mem and disk (MiB)
MAX_GPUS = 64
MAX_PORTS = 1000
MAX_ATTEMPTS = 1000
MAX_KILL_GRACE = 86_400.0  # seconds (a day)
MAX_RUNTIME = 365 * 86_400.0  # seconds (a year)

MAX_NAME = 255
MAX_COMMAND = 64 * 1024
MAX_IMAGE = 1024
MAX_KEY = 255
MAX_VALUE = 4096
MAX_ENTRIES = 100
MAX_PAUSE_REASON = 1024

PRINTABLE = (
    r"^[^\x00-\x1f\x7f-\x9f"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]*$"
)
"""No C0 or C1 control character, no DEL, and none of the invisible format characters that
change how text around them reads: zero-width characters, the bidirectional overrides and
isolates (U+202E shows a name backwards on the dashboard), line and paragraph separators."""
NO_NUL = r"^[^\x00]*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMAGE = r"^[!-~]*$"
"""Printable ASCII, no space: what an image reference is made of."""

RULES = {
    PRINTABLE: (
        "only printable characters (no control characters such as NUL, ESC, CR or LF, and no "
        "invisible format characters such as bidirectional overrides)"
    ),
    NO_NUL: "no NUL character",
    ENV_NAME: "a name of letters, digits and '_', not starting with a digit",
    IMAGE: "printable ASCII characters without spaces",
}
"""How a message states each pattern."""


@functools.cache
def fullmatcher(pattern: str) -> Callable[[str], re.Match[str] | None]:
    """``pattern``'s ``fullmatch``: whether a text matches it whole, as a JSON Schema validator
    reads it."""
    return re.compile(pattern).fullmatch


def text_ok(pattern: str, text: str) -> bool:
    return fullmatcher(pattern)(text) is not None
