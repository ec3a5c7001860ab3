"""Configuration: defaults, environment overrides, one clear error per bad key, the sample file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scale_scheduler.daemon.cli import main as cli
from scale_scheduler.daemon.service.config import (
    ConfigError,
    iter_settings,
    load_config,
    master_address_hint,
    parse_config,
    sample_yaml,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_file() -> None:
    config = parse_config(None, environ={})
    assert config.mesos.master == "http://127.0.0.1:5050"
    assert config.mesos.failover_timeout == 604800.0
    assert config.mesos.roles == ["*"]
    assert config.api.port == 8000
    assert config.logging.format == "auto"


def test_required_keys_exist_with_their_names() -> None:
    keys = {key for key, *_ in iter_settings()}
    for key in (
        "mesos.master",
        "mesos.framework_name",
        "mesos.user",
        "mesos.roles",
        "mesos.failover_timeout",
        "api.host",
        "api.port",
        "state.path",
        "logging.level",
        "logging.format",
    ):
        assert key in keys


def test_environment_overrides_file_values() -> None:
    config = parse_config(
        {"api": {"port": 8001}},
        environ={
            "SCALE_SCHEDULER_API__PORT": "9000",
            "SCALE_SCHEDULER_MESOS__ROLES": "[a, b]",
            "SCALE_SCHEDULER_LOGGING__FORMAT": "json",
            "UNRELATED": "x",
        },
    )
    assert config.api.port == 9000
    assert config.mesos.roles == ["a", "b"]
    assert config.logging.format == "json"


@pytest.mark.parametrize(
    ("raw", "environ", "expected"),
    [
        ({"api": {"port": "eighty"}}, {}, "api.port: expected int, got str"),
        ({"api": {"port": 70000}}, {}, "api.port: expected int <= 65535"),
        ({"api": {"prot": 1}}, {}, "api.prot: unknown key (known keys in api: host, port"),
        ({"apis": {}}, {}, "apis: unknown section"),
        ({"logging": {"format": "xml"}}, {}, "logging.format: expected one of"),
        ({"mesos": {"roles": []}}, {}, "mesos.roles: expected array of length >= 1"),
        ({"mesos": {"master": "zk://zk1"}}, {}, "mesos.master: expected zk://host:port"),
        ({"mesos": {"master": "ftp://x y"}}, {}, "mesos.master: expected http://host:port"),
        ({"mesos": {"failover_timeout": -1}}, {}, "mesos.failover_timeout: expected float >= 0"),
        ({"state": {"retention_days": -1}}, {}, "state.retention_days: expected float >= 0"),
        ({"state": {"retention_days": "a month"}}, {}, "state.retention_days: expected float"),
        ({"state": {"retention_max_tasks": -5}}, {}, "state.retention_max_tasks: expected int >="),
        ({"state": {"retention_max_tasks": 1.5}}, {}, "state.retention_max_tasks: expected int"),
        ({"state": {"retention_interval": 0}}, {}, "state.retention_interval: expected float >"),
        ({}, {"SCALE_SCHEDULER_API__PORT": "abc"}, "api.port: expected int, got str"),
        ({}, {"SCALE_SCHEDULER_NOPE": "1"}, "SCALE_SCHEDULER_NOPE: not a setting"),
        ({}, {"SCALE_SCHEDULER_WEB__PORT": "1"}, "SCALE_SCHEDULER_WEB__PORT: not a setting"),
        (["a"], {}, "(top level): expected a mapping of sections, got list"),
        ({"api": 5}, {}, "api: expected object, got int"),
    ],
)
def test_bad_values_name_the_key(raw: object, environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ=environ)
    assert expected in str(info.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("api: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("api:\n  port: nope\n")
    with pytest.raises(ConfigError, match=r"api\.port: expected int, got str \(in .*wrong\.yaml\)"):
        load_config(wrong, environ={})


def test_check_config_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("api:\n  port: 9001\n")
    assert cli.main(["check-config", "--config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("state:\n  path: 3\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "state.path: expected str, got int" in err
    assert err.count("\n") == 1  # one message


def test_run_with_bad_config_exits_2_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("logging:\n  level: loud\n")
    assert cli.main(["run", "--config", str(bad)]) == 2
    assert "logging.level: expected one of" in capsys.readouterr().err
    assert not (tmp_path / "scale-scheduler.db").exists()


def test_shipped_config_yaml_is_the_generated_sample() -> None:
    shipped = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert shipped == sample_yaml(), "regenerate with: scale-scheduler config-sample > config.yaml"
    assert load_config(ROOT / "config.yaml", environ={}) == parse_config({}, environ={})


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key, _typ, _default, help_text in iter_settings():
        assert help_text, f"{key} has no help text"
        assert f"`{key}`" in readme, f"{key} is missing from the README's configuration reference"


def test_sample_yaml_round_trips_every_default() -> None:
    data = yaml.safe_load(sample_yaml())
    for key, _typ, default, _help in iter_settings():
        section, name = key.split(".")
        assert data[section][name] == default


@pytest.mark.parametrize(
    ("master", "expected"),
    [
        ("http://m1:5051", ("m1", 5051)),
        ("m2:5052,m3:5053", ("m2", 5052)),
        ("http://m4", ("m4", 5050)),
        ("zk://z1:2181/mesos", ("", 5050)),
    ],
)
def test_master_address_hint(master: str, expected: tuple[str, int]) -> None:
    assert master_address_hint(master) == expected


# --- where a bad value came from, YAML's own errors, choices in any case ------------------------


def test_a_bad_environment_value_names_its_variable_not_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("api:\n  host: 127.0.0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, environ={"SCALE_SCHEDULER_API__PORT": "abc"})
    assert str(info.value) == "api.port: expected int, got str (from SCALE_SCHEDULER_API__PORT)"
    with pytest.raises(ConfigError) as info:
        load_config(config, environ={"SCALE_SCHEDULER_API__PROT": "1"})
    assert str(info.value).endswith("(from SCALE_SCHEDULER_API__PROT)")
    config.write_text("api:\n  port: abc\n")  # the same mistake in the file names the file
    with pytest.raises(ConfigError) as info:
        load_config(config, environ={"SCALE_SCHEDULER_API__HOST": "0.0.0.0"})
    assert str(info.value) == f"api.port: expected int, got str (in {config})"


def test_invalid_yaml_is_one_line_with_line_column_and_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("api:\n  port: 1\n  host: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: not valid YAML: line 4, column 1: expected ',' or ']'")
    assert message.endswith("(while parsing a flow sequence)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "api:\n  port: 1\n  host: x\n  port: 2\n",
            "line 4, column 3: duplicate key 'port' (first at line 2)",
        ),
        (
            "api: {}\nstate: {}\napi: {port: 1}\n",
            "line 3, column 1: duplicate key 'api' (first at line 1)",
        ),
    ],
)
def test_a_duplicate_yaml_key_is_refused_naming_key_and_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: not valid YAML: {expected}"


def test_a_duplicate_key_in_an_environment_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^SCALE_SCHEDULER_MESOS__ROLES: .*duplicate key 'a'"):
        parse_config({}, environ={"SCALE_SCHEDULER_MESOS__ROLES": "{a: 1, a: 2}"})


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("api:\n  <<: {host: 127.0.0.2, port: 1}\n  port: 9001\n")
    api = load_config(path, environ={}).api
    assert (api.host, api.port) == ("127.0.0.2", 9001)  # an explicit key overrides a merged one


@pytest.mark.parametrize("level", ["INFO", "Warning", "DEBUG", "info"])
def test_levels_and_other_choices_are_read_in_any_case(level: str) -> None:
    config = parse_config({"logging": {"level": level, "format": "JSON"}}, environ={})
    assert config.logging.level == level.lower()
    assert config.logging.format == "json"
    from_env = parse_config({}, environ={"SCALE_SCHEDULER_LOGGING__LEVEL": level})
    assert from_env.logging.level == level.lower()


def test_read_auth_without_a_token_file_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"api": {"read_auth": True}}, environ={})
    assert str(info.value).startswith("api.read_auth: true needs api.token_file")
    assert parse_config({"api": {"read_auth": True, "token_file": "t"}}, environ={}).api.read_auth
