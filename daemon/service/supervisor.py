"""How components ask the daemon to stop: a clean stop, or a fatal error with its exit code."""

from __future__ import annotations

import asyncio

import structlog

from scale_scheduler.daemon.service.exit_codes import ExitCode

log = structlog.get_logger(__name__)


def log_fatal(code: ExitCode, message: str, error: BaseException | None = None) -> None:
    """The one log event of a fatal error (with ``error``'s traceback, for an unexpected one)."""
    log.error(
        "daemon_fatal", exit_code=int(code), reason=code.name, message=message, exc_info=error
    )


class Supervisor:
    def __init__(self) -> None:
        self._done = asyncio.Event()
        self.exit_code = ExitCode.OK
        self.reason = ""

    def stop(self, reason: str = "requested") -> None:
        if not self._done.is_set():
            self.reason = reason
            self._done.set()

    def fail(self, code: ExitCode, message: str, error: BaseException | None = None) -> None:
        """Stop with a non-zero exit status; the first fatal reason wins and is logged once."""
        if self._done.is_set() and self.exit_code is not ExitCode.OK:
            return
        log_fatal(code, message, error)
        self.exit_code = code
        self.reason = message
        self._done.set()

    @property
    def stopping(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> ExitCode:
        await self._done.wait()
        return self.exit_code
