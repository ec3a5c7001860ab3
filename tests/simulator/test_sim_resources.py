"""Resource arithmetic and the command-line parsers of the simulator's config."""

from __future__ import annotations

import pytest

from scale_scheduler.simulator.config import expand, parse_attributes, parse_ports, parse_zk_url
from scale_scheduler.simulator.resources import ResourceError, Resources


def test_subtracting_ports_splits_ranges_and_containment_follows() -> None:
    have = Resources.of({"cpus": 4}, ports=[(31000, 31010)])
    take = Resources.of({"cpus": 1.5}, ports=[(31003, 31004)])
    left = have - take
    assert left.scalars == {"cpus": 2.5}
    assert left.ranges == {"ports": ((31000, 31002), (31005, 31010))}
    assert have.contains(take)
    assert not left.contains(take)
    assert (left + take).ranges == have.ranges


def test_scalars_do_not_drift() -> None:
    res = Resources.of({"cpus": 1.0})
    for _ in range(10):
        res.subtract_in_place(Resources.of({"cpus": 0.1}))
    assert res.is_empty()


def test_json_round_trip_and_errors() -> None:
    original = Resources.of({"cpus": 2, "mem": 128}, ports=[(1, 3)])
    parsed = Resources.from_json(original.to_json("r"))
    assert parsed == original
    assert original.to_json("r")[0]["allocation_info"] == {"role": "r"}
    with pytest.raises(ResourceError):
        Resources.from_json([{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}])
    with pytest.raises(ResourceError):
        Resources.from_json([{"name": "x", "type": "TEXT"}])
    with pytest.raises(ResourceError):
        Resources.from_json({"name": "cpus"})


def test_config_parsers() -> None:
    assert parse_ports("31000-31005, 40000") == ((31000, 31005), (40000, 40000))
    with pytest.raises(ValueError, match="bad port range"):
        parse_ports("5-1")
    assert parse_attributes("rack:r{i%4};zone:west") == (("rack", "r{i%4}"), ("zone", "west"))
    with pytest.raises(ValueError, match="bad attribute"):
        parse_attributes("novalue")
    assert expand("r{i%4}-{i}", 6) == "r2-6"
    assert parse_zk_url("zk://a:1,b:2/mesos") == ("a:1,b:2", "/mesos")
    with pytest.raises(ValueError, match="zk://"):
        parse_zk_url("http://a:1/mesos")
