"""Resource arithmetic for the simulated master: scalars and ranges in Mesos's JSON shape.

Owns the `Resources` value type (add, subtract, containment, JSON in and out). It holds no
cluster state and knows nothing about offers or tasks. Scalars use Mesos's fixed-point rule
(three decimal places) so repeated arithmetic does not drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Range = tuple[int, int]


class ResourceError(ValueError):
    """A resource list that is not valid Mesos JSON."""


def _fixed(value: float) -> float:
    return round(value * 1000) / 1000


def normalize_ranges(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sort and merge overlapping or adjacent ranges."""
    out: list[list[int]] = []
    for begin, end in sorted(ranges):
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def _ranges_subtract(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    result: list[Range] = list(have)
    for tb, te in take:
        nxt: list[Range] = []
        for b, e in result:
            if te < b or tb > e:
                nxt.append((b, e))
                continue
            if b < tb:
                nxt.append((b, tb - 1))
            if te < e:
                nxt.append((te + 1, e))
        result = nxt
    return tuple(result)


def _ranges_contain(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    return all(any(b <= wb and we <= e for b, e in have) for wb, we in want)


def _ranges_size(ranges: tuple[Range, ...]) -> int:
    return sum(e - b + 1 for b, e in ranges)


@dataclass(slots=True)
class Resources:
    """A bag of named scalar and range resources (roles are carried by the offer, not here)."""

    scalars: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, tuple[Range, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, scalars: Mapping[str, float] | None = None, **ranges: Iterable[Range]) -> Resources:
        """Build from plain values, dropping zero scalars and empty ranges."""
        res = cls()
        for name, value in (scalars or {}).items():
            if value > 0:
                res.scalars[name] = _fixed(value)
        for name, rs in ranges.items():
            norm = normalize_ranges(rs)
            if norm:
                res.ranges[name] = norm
        return res

    @classmethod
    def from_json(cls, items: Any) -> Resources:
        """Parse a list of Mesos `Resource` JSON objects; raise `ResourceError` when malformed."""
        if not isinstance(items, list):
            raise ResourceError("'resources' must be a list")
        res = cls()
        for item in items:
            if not isinstance(item, dict):
                raise ResourceError("a resource must be an object")
            name = item.get("name")
            kind = item.get("type")
            if not isinstance(name, str) or not name:
                raise ResourceError("a resource needs a 'name'")
            if kind == "SCALAR":
                value = (item.get("scalar") or {}).get("value")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ResourceError(f"resource {name!r} needs 'scalar.value'")
                if value < 0:
                    raise ResourceError(f"resource {name!r} is negative")
                res.scalars[name] = _fixed(res.scalars.get(name, 0.0) + value)
            elif kind == "RANGES":
                raw = (item.get("ranges") or {}).get("range")
                if not isinstance(raw, list):
                    raise ResourceError(f"resource {name!r} needs 'ranges.range'")
                parsed: list[Range] = []
                for r in raw:
                    begin = r.get("begin") if isinstance(r, dict) else None
                    end = r.get("end") if isinstance(r, dict) else None
                    if not isinstance(begin, int) or not isinstance(end, int) or begin > end:
                        raise ResourceError(f"resource {name!r} has an invalid range")
                    parsed.append((begin, end))
                res.ranges[name] = normalize_ranges([*res.ranges.get(name, ()), *parsed])
            else:
                raise ResourceError(f"resource {name!r} has unsupported type {kind!r}")
        return res

    def is_empty(self) -> bool:
        for value in self.scalars.values():
            if value > 0:
                return False
        return not any(self.ranges.values())

    def copy(self) -> Resources:
        return Resources(dict(self.scalars), dict(self.ranges))

    def __add__(self, other: Resources) -> Resources:
        out = self.copy()
        out.add_in_place(other)
        return out

    def __sub__(self, other: Resources) -> Resources:
        out = self.copy()
        out.subtract_in_place(other)
        return out

    def add_in_place(self, other: Resources) -> None:
        for name, value in other.scalars.items():
            self.scalars[name] = _fixed(self.scalars.get(name, 0.0) + value)
        for name, rs in other.ranges.items():
            self.ranges[name] = normalize_ranges([*self.ranges.get(name, ()), *rs])

    def subtract_in_place(self, other: Resources) -> None:
        for name, value in other.scalars.items():
            left = _fixed(self.scalars.get(name, 0.0) - value)
            if left > 0:
                self.scalars[name] = left
            else:
                self.scalars.pop(name, None)
        for name, rs in other.ranges.items():
            left_r = _ranges_subtract(self.ranges.get(name, ()), rs)
            if left_r:
                self.ranges[name] = left_r
            else:
                self.ranges.pop(name, None)

    def contains(self, other: Resources) -> bool:
        """True when every quantity in `other` fits inside this bag."""
        for name, value in other.scalars.items():
            if value > 0 and self.scalars.get(name, 0.0) + 1e-9 < value:
                return False
        return all(
            _ranges_contain(self.ranges.get(name, ()), rs) for name, rs in other.ranges.items()
        )

    def scalar(self, name: str) -> float:
        return self.scalars.get(name, 0.0)

    def to_json(self, allocation_role: str | None = None) -> list[dict[str, Any]]:
        """Mesos `Resource` JSON; with `allocation_role`, stamped as offered to that role."""
        out: list[dict[str, Any]] = []
        for name, value in self.scalars.items():
            if value > 0:
                item: dict[str, Any] = {
                    "name": name,
                    "type": "SCALAR",
                    "scalar": {"value": value},
                    "role": "*",
                }
                if allocation_role is not None:
                    item["allocation_info"] = {"role": allocation_role}
                out.append(item)
        for name, rs in self.ranges.items():
            if rs:
                ritem: dict[str, Any] = {
                    "name": name,
                    "type": "RANGES",
                    "ranges": {"range": [{"begin": b, "end": e} for b, e in rs]},
                    "role": "*",
                }
                if allocation_role is not None:
                    ritem["allocation_info"] = {"role": allocation_role}
                out.append(ritem)
        return out

    def summary(self) -> dict[str, Any]:
        """Compact plain form for logs and the `/sim` endpoints."""
        out: dict[str, Any] = dict(self.scalars)
        for name, rs in self.ranges.items():
            out[name] = _ranges_size(rs)
        return out
