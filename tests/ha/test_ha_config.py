"""The ha.* settings: defaults, and config errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from scale_scheduler.api.app import build_app
from scale_scheduler.daemon.service.config import ConfigError, parse_config
from scale_scheduler.daemon.service.exit_codes import ExitCode, FatalError
from scale_scheduler.daemon.service.preflight import run_checks

DSN = "postgresql://scheduler@db1:5432/scale"


def _parse(**ha: Any) -> Any:
    return parse_config({"ha": ha, "api": {"port": 8000}}, environ={})


def test_defaults_are_a_single_instance_with_safe_timings() -> None:
    ha = parse_config({}, environ={}).ha
    assert (ha.lease_seconds, ha.renew_seconds, ha.advertise_url, ha.instance, ha.dsn) == (
        10.0,
        2.0,
        "",
        "",
        "",
    )


@pytest.mark.parametrize(
    ("ha", "key", "words"),
    [
        ({"renew_seconds": 10}, "ha.renew_seconds", "less than ha.lease_seconds (10)"),
        ({"lease_seconds": 0}, "ha.lease_seconds", "expected"),
        ({"password_file": "/x"}, "ha.password_file", "only used with ha.dsn"),
        ({"dsn": "mysql://db/x"}, "ha.dsn", ""),
        ({"dsn": DSN, "advertise_url": "db1:8000"}, "ha.advertise_url", "http://host:port/"),
        ({"instance": "two words"}, "ha.instance", "without spaces"),
        ({"leader": "a"}, "ha.leader", "unknown key"),
    ],
)
def test_bad_values_name_the_key(ha: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as caught:
        _parse(**ha)
    assert caught.value.key == key
    assert words in str(caught.value)


def test_an_election_needs_a_port_the_others_can_know() -> None:
    with pytest.raises(ConfigError, match=r"ha\.advertise_url: required when api\.port is 0"):
        parse_config({"ha": {"dsn": DSN}, "api": {"port": 0}}, environ={})
    config = parse_config(
        {"ha": {"dsn": DSN, "advertise_url": "http://s1:9000"}, "api": {"port": 0}}, environ={}
    )
    assert config.ha.advertise_url == "http://s1:9000"


def test_the_election_dsn_is_shown_redacted() -> None:
    config = _parse(dsn="postgresql://scheduler:hunter2@db1/scale")
    assert "hunter2" not in repr(config.ha)


def test_ha_dsn_is_refused_beside_the_postgresql_backend() -> None:
    with pytest.raises(ConfigError, match=r"ha\.dsn: with state\.backend: postgresql"):
        parse_config(
            {"state": {"backend": "postgresql", "dsn": DSN}, "ha": {"dsn": DSN}}, environ={}
        )


async def test_a_single_instance_answers_leader_as_itself(
    aiohttp_client: Any, make_config: Any
) -> None:
    client = await aiohttp_client(
        build_app(
            make_config(api={"port": 8123}, mesos={"hostname": "m.test"}), connect_mesos=False
        )
    )
    response = await client.get("/leader/")
    assert response.status == 200
    body = await response.json()
    assert body["leader"]["instance"] == body["this"]["instance"]
    assert body["leader"]["hostname"] == "m.test"
    assert body["this"]["instance"].endswith(":8123")
    assert body["this"]["role"] == "leader"
    assert body["epoch"] == 1
    assert body["since"]


async def test_the_dashboard_shows_the_leader(aiohttp_client: Any, make_config: Any) -> None:
    client = await aiohttp_client(build_app(make_config(), connect_mesos=False))
    response = await client.get("/dashboard/state/")
    assert response.status == 200
    leader = (await response.json())["leader"]
    assert leader["this"]["role"] == "leader"
    assert leader["leader"]["instance"] == leader["this"]["instance"]
    page = await (await client.get("/")).text()
    assert 'id="leader-pill"' in page


def test_check_config_warns_that_ha_dsn_keeps_state_per_instance(tmp_path: Any) -> None:
    password = tmp_path / "password"
    password.write_text("pw\n")
    password.chmod(0o600)
    config = parse_config(
        {
            "state": {"path": str(tmp_path / "s.db")},
            "api": {"port": 8000},
            "ha": {"dsn": DSN, "password_file": str(password)},
        },
        environ={},
    )
    warnings = run_checks(config)
    assert [w.key for w in warnings] == ["ha.dsn"]
    assert "each keeps its own state" in warnings[0].message
    password.write_text("")
    with pytest.raises(FatalError, match=r"^ha\.password_file: ") as caught:
        run_checks(config)
    assert caught.value.code is ExitCode.CONFIG_ERROR
