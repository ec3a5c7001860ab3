"""One exit status per fatal reason, so systemd and operators can tell them apart.

README.md's "Exit statuses" table is where they are documented (a test keeps it in step).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    """Stopped cleanly (SIGTERM or SIGINT)."""
    FAILURE = 1
    """Anything unexpected: an exception no other status names (a bug, or a resource failing)."""
    CONFIG_ERROR = 2
    STORE_ERROR = 3
    """The database cannot be opened or migrated."""
    FRAMEWORK_REFUSED = 4
    """The master refused the framework: it sent ERROR (for example the framework was removed),
    or answered SUBSCRIBE with another framework id."""
    API_BIND_FAILED = 5
    SUBSCRIPTION_LOST = 6
    """No subscription to a Mesos master for ``mesos.give_up_after`` seconds."""
    DEPOSED = 7
    """This instance led and no longer does (its term ended, or the master said another
    instance subscribed with the framework id): it stopped calling Mesos at once and exits, to
    be restarted as a standby."""


class FatalError(Exception):
    """Stops the daemon with ``code``; ``message`` is logged once, as ``daemon_fatal``."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
