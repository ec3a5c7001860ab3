"""B1's decode limit: the same OFFERS payloads through JSON decoders alone, in this process.

``decode_rates(stream, seconds)`` returns offers/s for decoders that turn every value of the
event into Python objects: msgspec into typed structs of every field (the wire types the
daemon decoded before its offers kept resources raw), msgspec into plain Python objects, and the
standard library's ``json``. The fastest of them is B1's decode limit, as the issue defines it.
``lazy_decode_rate`` times what the daemon's driver does per record now (``mesos_types.Event``:
resources, attributes and url left as raw JSON until read); it is reported beside the limit,
not as one, because it does not parse those values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bench.offer_stream import OfferStream
from scale_scheduler.daemon.mesos.mesos_types import (
    AllocationInfo,
    Attribute,
    Resource,
    Value,
    decode_event,
)


class _EagerOffer(msgspec.Struct, gc=False):
    id: Value
    framework_id: Value
    agent_id: Value
    hostname: str
    resources: list[Resource] = msgspec.field(default_factory=list)
    attributes: list[Attribute] = msgspec.field(default_factory=list)
    allocation_info: AllocationInfo | None = None
    url: Any | None = None


class _EagerOffers(msgspec.Struct, gc=False):
    offers: list[_EagerOffer] = msgspec.field(default_factory=list)
    inverse_offers: list[Any] = msgspec.field(default_factory=list)


class _EagerEvent(msgspec.Struct, gc=False):
    type: str
    offers: _EagerOffers | None = None


TYPED_DECODER = "msgspec typed, every field"
"""The decoder whose rate is also the machine's calibration (``bench.calibration``)."""
DECODERS: dict[str, Callable[[bytes], Any]] = {
    TYPED_DECODER: msgspec.json.Decoder(_EagerEvent).decode,
    "msgspec untyped": msgspec.json.decode,
    "json (stdlib)": json.loads,
}
LAZY_DECODER = "msgspec typed as the daemon reads it (resources raw until read)"


def decode_rate(decode: Callable[[bytes], Any], payloads: list[bytes], seconds: float) -> float:
    """Offers decoded per second over about ``seconds`` (whole passes over ``payloads``)."""
    offers_per_payload = len(decode_event(payloads[0]).offers.offers)  # type: ignore[union-attr]
    decode(payloads[0])
    done = 0
    started = time.perf_counter()
    while True:
        for payload in payloads:
            decode(payload)
        done += len(payloads)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done * offers_per_payload / elapsed


def decode_rates(stream: OfferStream, seconds: float, events: int = 40) -> dict[str, float]:
    """Offers/s of every full decoder (the limit is the fastest of these)."""
    payloads = stream.payloads(events)
    return {name: decode_rate(fn, payloads, seconds) for name, fn in DECODERS.items()}


def lazy_decode_rate(stream: OfferStream, seconds: float, events: int = 40) -> float:
    """Offers/s of the daemon's own decode (not a limit: resources stay unparsed)."""
    return decode_rate(decode_event, stream.payloads(events), seconds)
