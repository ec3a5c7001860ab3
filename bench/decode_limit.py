"""B1's decode limit: the same OFFERS payloads through JSON decoders alone, in this process.

``decode_rates(stream, seconds)`` returns offers/s for msgspec decoding into the daemon's own
typed ``Event`` structs (what the native driver does per record), msgspec into plain Python
objects, and the standard library's ``json``. The fastest is B1's decode limit: no client can
turn offers into answers faster than it can decode them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bench.offer_stream import OfferStream
from scale_scheduler.daemon.mesos_types import decode_event

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "msgspec typed (mesos_types.Event)": decode_event,
    "msgspec untyped": msgspec.json.decode,
    "json (stdlib)": json.loads,
}


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
    payloads = stream.payloads(events)
    return {name: decode_rate(fn, payloads, seconds) for name, fn in DECODERS.items()}
