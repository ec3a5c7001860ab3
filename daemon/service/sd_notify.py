"""systemd's notify protocol (``sd_notify(3)``) and the daemon's use of it, without libsystemd.

Owns the datagram sender (``Notifier``: ``NOTIFY_SOCKET``, abstract names written ``@name``), the
watchdog pinger and the ``STATUS=`` reporter. The pinger is a coroutine on the daemon's own event
loop, so a blocked loop stops the pings and systemd restarts the service. When the daemon is not
started by systemd (no ``NOTIFY_SOCKET``) every message is dropped silently.

Does not decide when the daemon is ready or stopping: ``service.serve`` does.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

from scale_scheduler.daemon.mesos.driver import ConnectionState, ConnectionStatus

log = structlog.get_logger(__name__)

STATUS_POLL_SECONDS = 1.0


class Notifier:
    """Sends ``KEY=value`` lines to the service manager; never blocks and never raises."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` as systemd sets them."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            log.warning("sd_notify_socket_unsupported", notify_socket=address)
            address = None
        watchdog: int | None = None
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                watchdog = int(env.get("WATCHDOG_USEC", "")) or None
            except ValueError:
                watchdog = None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        if not self.enabled or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, **fields: str | int) -> bool:
        """Send ``READY=1``-style fields in one datagram; ``True`` when it was handed over."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8", "replace"), target)
        except OSError as exc:
            # A full receive queue or a vanished manager must never stop the daemon.
            if not self._warned:
                self._warned = True
                log.warning("sd_notify_failed", notify_socket=self.address, error=str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def ping_watchdog(notifier: Notifier, interval: float) -> None:
    """``WATCHDOG=1`` every ``interval`` seconds for as long as the event loop runs this."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def describe_connection(status: ConnectionStatus) -> str:
    """One line for ``systemctl status``: the Mesos connection as the driver sees it."""
    master = f"{status.master_hostname}:{status.master_port}" if status.master_hostname else "?"
    if status.state is ConnectionState.SUBSCRIBED:
        return f"Mesos: subscribed to {master} as {status.framework_id}"
    if status.state is ConnectionState.CONNECTING:
        return f"Mesos: connecting to {master}"
    if status.state is ConnectionState.STOPPED:
        return "Mesos: stopped"
    error = f" ({status.last_error})" if status.last_error else ""
    return f"Mesos: disconnected{error}"


async def report_status(
    notifier: Notifier,
    describe: Callable[[], str],
    interval: float = STATUS_POLL_SECONDS,
    sent: str | None = None,
) -> None:
    """Send ``STATUS=describe()`` whenever the text changes (polled; the driver is untouched).

    ``sent`` is the text already announced (with ``READY=1``), so it is not repeated.
    """
    last = sent
    while True:
        text = describe()
        if text != last:
            notifier.status(text)
            last = text
        await asyncio.sleep(interval)
