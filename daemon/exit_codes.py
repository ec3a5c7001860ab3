"""One exit status per fatal reason, so systemd and operators can tell them apart."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    CONFIG_ERROR = 2
    STORE_ERROR = 3
    FRAMEWORK_REMOVED = 4
    """The master sent ERROR (for example the framework was removed)."""
    API_BIND_FAILED = 5
    DRIVER_UNAVAILABLE = 6


class FatalError(Exception):
    """Stops the daemon with ``code`` after logging ``message`` once."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
