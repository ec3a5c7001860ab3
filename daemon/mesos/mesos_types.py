"""Typed Mesos v1 wire structures (the subset the daemon reads and writes).

Field names follow ``include/mesos/v1/mesos.proto`` and ``scheduler/scheduler.proto`` in their
JSON form (snake_case, enums as strings, ``bytes`` as Base64 strings). Decoding ignores unknown
fields, so a newer master stays readable; fields the daemon must echo back unchanged when it
launches on an offered resource (reservations, disk, ...) are kept as raw JSON values.

This module owns the shapes only: no I/O, no behaviour beyond small pure helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec


class _Wire(msgspec.Struct, gc=False):
    """Base of every wire struct: never tracked by the garbage collector.

    Decoded events are trees (no reference cycles), and an OFFERS event of 100 offers would
    otherwise add about 1,200 tracked objects; while a burst of offers waits for its pass, full
    collections walking them cost more than the decoding itself (B1 in ``bench/RESULTS.md``).
    """


# --- identifiers and small values -------------------------------------------------------------


class Value(_Wire, omit_defaults=True):
    """Any of the ``*ID`` messages: ``{"value": "..."}``."""

    value: str


class Scalar(_Wire, omit_defaults=True):
    value: float


class Range(_Wire, omit_defaults=True):
    begin: int
    end: int


class Ranges(_Wire, omit_defaults=True):
    range: list[Range] = msgspec.field(default_factory=list)


class Set(_Wire, omit_defaults=True):
    item: list[str] = msgspec.field(default_factory=list)


class AllocationInfo(_Wire, omit_defaults=True):
    role: str | None = None


class Resource(_Wire, omit_defaults=True):
    name: str
    # Mesos requires ``type`` on the wire: the default is empty so that it is always encoded,
    # and ``__post_init__`` fills it in from whichever value is set.
    type: str = ""
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: Set | None = None
    role: str | None = None
    allocation_info: AllocationInfo | None = None
    # Echoed unchanged when launching on this resource.
    reservations: list[Any] | None = None
    reservation: Any | None = None
    disk: Any | None = None
    revocable: Any | None = None
    shared: Any | None = None
    provider_id: Any | None = None

    def __post_init__(self) -> None:
        if not self.type:
            if self.ranges is not None:
                self.type = "RANGES"
            elif self.set is not None:
                self.type = "SET"
            else:
                self.type = "SCALAR"


class Attribute(_Wire, omit_defaults=True):
    name: str
    type: str = "TEXT"
    text: Value | None = None
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: Set | None = None

    def as_text(self) -> str:
        """The attribute's value as a string, for constraint matching."""
        if self.text is not None:
            return self.text.value
        if self.scalar is not None:
            value = self.scalar.value
            return str(int(value)) if value == int(value) else str(value)
        if self.ranges is not None:
            return ",".join(f"[{r.begin}-{r.end}]" for r in self.ranges.range)
        if self.set is not None:
            return ",".join(self.set.item)
        return ""


_EMPTY_LIST = msgspec.Raw(b"[]")
_NULL = msgspec.Raw(b"null")


class Offer(_Wire, omit_defaults=True):
    """One offer. ``resources`` and ``attributes`` stay raw JSON until read.

    Most offers are declined unread (paused, nothing queued, an agent offering what it offered
    last time), and decoding their resources was three quarters of decoding an OFFERS event
    (B1 in ``bench/RESULTS.md``). The properties decode on every read: readers that need them
    more than once keep the result. Build offers in code with ``Offer.build``.
    """

    id: Value
    framework_id: Value
    agent_id: Value
    hostname: str
    resources_json: msgspec.Raw = msgspec.field(default=_EMPTY_LIST, name="resources")
    attributes_json: msgspec.Raw = msgspec.field(default=_EMPTY_LIST, name="attributes")
    allocation_info: AllocationInfo | None = None
    url: msgspec.Raw = _NULL  # kept raw, unread

    @property
    def resources(self) -> list[Resource]:
        """The offered resources (raises ``msgspec.ValidationError`` if malformed)."""
        return _resources_decoder.decode(self.resources_json)

    @property
    def attributes(self) -> list[Attribute]:
        """The agent's attributes (raises ``msgspec.ValidationError`` if malformed)."""
        return _attributes_decoder.decode(self.attributes_json)

    @classmethod
    def build(
        cls,
        *,
        id: Value,
        framework_id: Value,
        agent_id: Value,
        hostname: str,
        resources: Sequence[Resource] = (),
        attributes: Sequence[Attribute] = (),
        allocation_info: AllocationInfo | None = None,
    ) -> Offer:
        return cls(
            id=id,
            framework_id=framework_id,
            agent_id=agent_id,
            hostname=hostname,
            resources_json=msgspec.Raw(_encode(list(resources))),
            attributes_json=msgspec.Raw(_encode(list(attributes))),
            allocation_info=allocation_info,
        )


class Address(_Wire, omit_defaults=True):
    hostname: str | None = None
    ip: str | None = None
    port: int | None = None


class MasterInfo(_Wire, omit_defaults=True):
    id: str = ""
    ip: int = 0
    port: int = 5050
    hostname: str | None = None
    version: str | None = None
    address: Address | None = None
    pid: str | None = None

    def host_and_port(self) -> tuple[str, int]:
        """Where this master listens, preferring ``address`` as Mesos does."""
        if self.address is not None:
            host = self.address.hostname or self.address.ip or self.hostname or ""
            return host, self.address.port or self.port
        return self.hostname or "", self.port


class ContainerStatus(_Wire, omit_defaults=True):
    """The part of ``ContainerStatus`` the daemon reads: which container runs the task (the
    usage poller joins the agents' container statistics to tasks with it)."""

    container_id: Value | None = None


class TaskStatus(_Wire, omit_defaults=True):
    task_id: Value
    state: str
    message: str | None = None
    source: str | None = None
    reason: str | None = None
    agent_id: Value | None = None
    executor_id: Value | None = None
    timestamp: float | None = None
    uuid: str | None = None
    healthy: bool | None = None
    data: str | None = None
    labels: Any | None = None
    container_status: ContainerStatus | None = None
    unreachable_time: Any | None = None


# --- events -----------------------------------------------------------------------------------


class Subscribed(_Wire, omit_defaults=True):
    framework_id: Value
    heartbeat_interval_seconds: float | None = None
    master_info: MasterInfo | None = None


class OffersEvent(_Wire, omit_defaults=True):
    offers: list[Offer] = msgspec.field(default_factory=list)
    inverse_offers: list[Any] = msgspec.field(default_factory=list)


class InverseOffersEvent(_Wire, omit_defaults=True):
    inverse_offers: list[Any] = msgspec.field(default_factory=list)


class RescindEvent(_Wire, omit_defaults=True):
    offer_id: Value


class RescindInverseOfferEvent(_Wire, omit_defaults=True):
    inverse_offer_id: Value


class UpdateEvent(_Wire, omit_defaults=True):
    status: TaskStatus


class MessageEvent(_Wire, omit_defaults=True):
    agent_id: Value
    executor_id: Value
    data: str = ""


class FailureEvent(_Wire, omit_defaults=True):
    agent_id: Value | None = None
    executor_id: Value | None = None
    status: int | None = None


class ErrorEvent(_Wire, omit_defaults=True):
    message: str = ""


class Event(_Wire, omit_defaults=True):
    """One scheduler event; ``type`` names which payload field is set."""

    type: str
    subscribed: Subscribed | None = None
    offers: OffersEvent | None = None
    inverse_offers: InverseOffersEvent | None = None
    rescind: RescindEvent | None = None
    rescind_inverse_offer: RescindInverseOfferEvent | None = None
    update: UpdateEvent | None = None
    message: MessageEvent | None = None
    failure: FailureEvent | None = None
    error: ErrorEvent | None = None


# --- what the daemon sends --------------------------------------------------------------------


class EnvironmentVariable(_Wire, omit_defaults=True):
    name: str
    value: str


class Environment(_Wire, omit_defaults=True):
    variables: list[EnvironmentVariable] = msgspec.field(default_factory=list)


class CommandInfo(_Wire, omit_defaults=True):
    value: str | None = None
    shell: bool = True
    environment: Environment | None = None
    uris: list[Any] | None = None
    arguments: list[str] | None = None


class Label(_Wire, omit_defaults=True):
    key: str
    value: str | None = None


class Labels(_Wire, omit_defaults=True):
    labels: list[Label] = msgspec.field(default_factory=list)


class DurationInfo(_Wire, omit_defaults=True):
    nanoseconds: int


class KillPolicy(_Wire, omit_defaults=True):
    grace_period: DurationInfo | None = None


def duration_info(seconds: float) -> DurationInfo:
    return DurationInfo(round(seconds * 1e9))


class TaskInfo(_Wire, omit_defaults=True):
    name: str
    task_id: Value
    agent_id: Value
    resources: list[Resource] = msgspec.field(default_factory=list)
    command: CommandInfo | None = None
    container: Any | None = None
    labels: Labels | None = None
    kill_policy: KillPolicy | None = None
    max_completion_time: DurationInfo | None = None


class Filters(_Wire, omit_defaults=True):
    refuse_seconds: float


TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)


def scalar(name: str, value: float, like: Resource | None = None) -> Resource:
    """A scalar resource of ``value``, with the role, reservations and allocation of ``like``."""
    if like is None:
        return Resource(name=name, type="SCALAR", scalar=Scalar(value))
    return msgspec.structs.replace(like, name=name, type="SCALAR", scalar=Scalar(value))


_event_decoder = msgspec.json.Decoder(Event)
_resources_decoder = msgspec.json.Decoder(list[Resource])
_attributes_decoder = msgspec.json.Decoder(list[Attribute])
_encode = msgspec.json.Encoder().encode


def decode_event(data: bytes | memoryview) -> Event:
    """Decode one RecordIO record into an ``Event`` (raises ``msgspec.DecodeError``)."""
    return _event_decoder.decode(data)
