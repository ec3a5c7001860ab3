"""The pure half of leadership: who this instance is, its role, and the rules of its terms.

No I/O and no clock of its own (callers pass the monotonic time), so every rule is testable:

- an instance is the leader from a term's start until the term ends: it was lost (renewal
  refused, connection to the database lost) or its ``valid_until`` passed on the monotonic clock;
- a new term's epoch must be higher than every epoch this instance has seen (epochs only
  increase: a lower or equal one means the database was rolled back or another program wrote the
  row, and acting on it could mean two leaders);
- ``may_act(now)`` is what a leader checks before each Mesos call.

It also names the two ways an instance's life as leader ends (``exit_status_of_mesos_error``).
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass
from datetime import datetime

from scale_scheduler.daemon.service.exit_codes import ExitCode

FAILED_OVER = "Framework failed over"
"""The master's ERROR on the old stream when a newer subscription of the framework took over."""


class Role(str, enum.Enum):
    LEADER = "leader"
    STANDBY = "standby"


@dataclass(frozen=True)
class Instance:
    """One daemon instance as the others see it."""

    instance: str
    api_url: str
    hostname: str


@dataclass(frozen=True)
class LeaderView:
    """Who leads (None: nobody known to), in which epoch and since when."""

    leader: Instance | None
    epoch: int
    since: datetime | None


class EpochWentBackError(Exception):
    """A term began with an epoch not above one this instance saw: never acted on."""


class TermState:
    """This instance's role and current term, changed only through the methods below."""

    def __init__(self) -> None:
        self.role = Role.STANDBY
        self.epoch = 0
        """The epoch of the current term, or of the last one this instance saw."""
        self.valid_until = 0.0
        self.changes = 0
        """How many times the role changed (to leader and back)."""

    def elected(self, epoch: int, valid_until: float) -> None:
        """A new term of this instance began."""
        if epoch <= self.epoch:
            raise EpochWentBackError(
                f"a new term with epoch {epoch}, not above the {self.epoch} already seen"
            )
        self.epoch = epoch
        self.valid_until = valid_until
        if self.role is not Role.LEADER:
            self.role = Role.LEADER
            self.changes += 1

    def renewed(self, epoch: int, valid_until: float) -> None:
        if self.role is not Role.LEADER or epoch != self.epoch:
            return  # a renewal answered after the term was given up: it changes nothing
        self.valid_until = max(self.valid_until, valid_until)

    def saw(self, epoch: int) -> None:
        """Another instance's term (read from the database): later terms must be above it."""
        if self.role is Role.STANDBY:
            self.epoch = max(self.epoch, epoch)

    def lost(self) -> bool:
        """The term ended; True when this instance was the leader until now."""
        was_leader = self.role is Role.LEADER
        if was_leader:
            self.role = Role.STANDBY
            self.valid_until = 0.0
            self.changes += 1
        return was_leader

    def may_act(self, now: float) -> bool:
        return self.role is Role.LEADER and now < self.valid_until


def exit_status_of_mesos_error(message: str, *, high_availability: bool) -> ExitCode:
    """The exit status for the master's ERROR ``message``.

    With several instances, "Framework failed over" means another instance subscribed with our
    framework id (it leads now): this one steps down (``DEPOSED``, restarted as a standby).
    A single instance has no one to hand over to, and a restart would take the framework back
    from whoever subscribed and start a ping-pong: it keeps exiting ``FRAMEWORK_REFUSED``.
    """
    if high_availability and message.strip() == FAILED_OVER:
        return ExitCode.DEPOSED
    return ExitCode.FRAMEWORK_REFUSED


WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


def this_instance(
    *,
    instance: str,
    advertise_url: str,
    api_host: str,
    api_port: int,
    machine: str,
    hostname: str,
) -> Instance:
    """This instance's name and URL from ``ha.instance`` and ``ha.advertise_url``, or derived:
    the machine's name (``machine``) and the API port; a specific ``api.host`` is the address
    the others reach. ``hostname`` is the name told to Mesos (``mesos.hostname`` or the
    machine's)."""
    host = machine if api_host in WILDCARD_HOSTS else api_host
    if advertise_url:
        url = advertise_url if advertise_url.endswith("/") else advertise_url + "/"
    else:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{api_port}/"
    name = instance or f"{socket_short_name(machine)}:{api_port}"
    return Instance(instance=name, api_url=url, hostname=hostname)


def socket_short_name(machine: str) -> str:
    """The host part of a machine's name (``sched-1`` of ``sched-1.example``)."""
    return machine.split(".", 1)[0] if machine and not machine[0].isdigit() else machine


def machine_name() -> str:
    """The machine's fully qualified name (may block on DNS: call it off the loop)."""
    return socket.getfqdn()
