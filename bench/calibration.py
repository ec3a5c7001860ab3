"""Calibration: each absolute target is judged as if it had been measured on the reference machine.

The machine is shared and its speed changes from one day to the next: the same code gave B2
16,658 tasks/s on 2026-11-28 and 8,573 on 2026-12-06, while the typed decode of the same offer
bytes fell from 279k to 174k offers/s. A fixed target cannot tell such a day from a regression.
So every scenario round times that decode itself (``Calibrator``: in the bench's own process,
while no child process runs), just before and just after its measurement, and the report judges
the round's raw figures scaled by ``reference rate / round rate``:

- on a machine half as fast (round rate = reference / 2) the factor is 2: a throughput of X
  tasks/s stands for 2X on the reference machine (``scale_rate``), a latency or duration of L for
  L/2 (``scale_duration``);
- ratios to a peer measured in the same round need no scaling, and memory is not scaled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from bench.common import Settings
from bench.decode_limit import DECODERS, TYPED_DECODER, decode_rate
from bench.offer_stream import OfferStream, load_offers

REFERENCE_DECODE_RATE = 278_741.0
"""Offers/s of B1's "msgspec typed, every field" decode (the median of 5 rounds) in the full run
of 2026-11-28 12:44 UTC, commit e7e998d (bench/RESULTS.md of that date): the machine on which the
targets were met and set."""

T = TypeVar("T")


def speed_factor(round_rate: float, reference: float = REFERENCE_DECODE_RATE) -> float:
    """How many times faster the reference machine is than the round's (2.0: half as fast)."""
    if not round_rate > 0 or not reference > 0:
        raise ValueError(f"decode rates must be positive: round {round_rate}, ref {reference}")
    return reference / round_rate


def scale_rate(raw: float, round_rate: float, reference: float = REFERENCE_DECODE_RATE) -> float:
    """A throughput measured in the round, as the reference machine would have measured it."""
    return raw * speed_factor(round_rate, reference)


def scale_duration(
    raw: float, round_rate: float, reference: float = REFERENCE_DECODE_RATE
) -> float:
    """A latency or duration measured in the round, as on the reference machine."""
    return raw / speed_factor(round_rate, reference)


def bracket_rate(calibration: Any) -> float | None:
    """The rate a recorded bracket (``Calibrator.around``) judges by, if there is one."""
    if isinstance(calibration, dict):
        rate = calibration.get("rate")
        if isinstance(rate, (int, float)) and rate > 0:
            return float(rate)
    return None


class Calibrator:
    """Times the typed decode of the recorded offers: the speed of the machine right now."""

    def __init__(self, offers: list[dict[str, Any]], seconds: float, events: int = 40) -> None:
        self.seconds = seconds
        self._decode = DECODERS[TYPED_DECODER]
        self._payloads = OfferStream(offers).payloads(events)

    @classmethod
    def for_run(cls, settings: Settings) -> Calibrator:
        """Over the run's recorded offers, ``settings.calibration_seconds`` per sample."""
        return cls(load_offers(settings.offers_path), settings.calibration_seconds)

    def sample(self) -> float:
        """Offers/s of the typed decode over about ``seconds``."""
        return decode_rate(self._decode, self._payloads, self.seconds)

    def around(self, measure: Callable[[], T]) -> tuple[T, dict[str, float]]:
        """``measure()`` between two samples; the bracket's ``rate`` is their mean."""
        before = self.sample()
        result = measure()
        after = self.sample()
        return result, {"before": before, "after": after, "rate": (before + after) / 2}

    def calibrated(self, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``measure()``'s figures with their bracket added under ``"calibration"``."""
        figures, bracket = self.around(measure)
        figures["calibration"] = bracket
        return figures
