"""state.backend, state.dsn, state.password_file: parsed, validated, checked at start-up, and
never showing a password."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from daemon_process import SCRIPT, write_config
from ports import free_port

from scale_scheduler.daemon.service.config import ConfigError, parse_config

SECRET = "s3cret-Pa55"


def _state(**state: Any) -> Any:
    return parse_config({"state": state}, environ={})


def test_defaults_are_sqlite_without_postgresql_settings() -> None:
    state = parse_config({}, environ={}).state
    assert (state.backend, state.dsn, state.password_file) == ("sqlite", "", "")


def test_postgresql_settings_are_accepted(tmp_path: Path) -> None:
    state = _state(
        backend="PostgreSQL",  # choices in any case, as every choice setting
        dsn="postgresql://scheduler@db1:5432/scale",
        password_file=str(tmp_path / "pw"),
    ).state
    assert state.backend == "postgresql"
    assert state.dsn == "postgresql://scheduler@db1:5432/scale"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"backend": "mysql"}, "state.backend: expected one of 'postgresql', 'sqlite'"),
        ({"backend": "postgresql"}, "state.dsn: required with state.backend: postgresql"),
        ({"backend": "postgresql", "dsn": "  "}, "state.dsn: required"),
        ({"backend": "postgresql", "dsn": "db1:5432"}, "state.dsn: expected a URL such as"),
        ({"backend": "postgresql", "dsn": 5432}, "state.dsn: expected str, got int"),
        ({"dsn": "postgresql://db1/scale"}, "state.dsn: only used with state.backend: postgresql"),
        ({"password_file": "/pw"}, "state.password_file: only used with state.backend: postgresql"),
        (
            {"backend": "postgresql", "dsn": "postgresql://db1/x", "password_file": "a\0b"},
            "state.password_file: a file name cannot contain a NUL character",
        ),
    ],
)
def test_bad_values_name_the_key(state: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _state(**state)
    assert expected in str(caught.value)
    assert caught.value.key == expected.split(":")[0]


@pytest.mark.parametrize(
    "dsn",
    [f"postgresql://u:{SECRET}@db1:99999/scale", f"mysql://u:{SECRET}@db1/scale", SECRET],
)
def test_a_bad_dsn_is_named_without_its_password(dsn: str) -> None:
    with pytest.raises(ConfigError, match=r"^state\.dsn: ") as caught:
        _state(backend="postgresql", dsn=dsn)
    assert SECRET not in str(caught.value)


def test_a_password_in_both_places_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match=r"^state\.password_file: state\.dsn holds a password"):
        _state(
            backend="postgresql",
            dsn=f"postgresql://u:{SECRET}@db1/scale",
            password_file="/etc/pw",
        )
    with pytest.raises(ConfigError) as caught:
        _state(
            backend="postgresql", dsn=f"postgresql://u@db1/x?password={SECRET}", password_file="/p"
        )
    assert SECRET not in str(caught.value)


def test_an_environment_dsn_error_names_the_variable_not_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"state": {"backend": "postgresql"}},
            environ={"SCALE_SCHEDULER_STATE__DSN": f"postgresql://u:{SECRET}@db1:0/x"},
        )
    message = str(caught.value)
    assert message.startswith("state.dsn: ")
    assert message.endswith("(from SCALE_SCHEDULER_STATE__DSN)")
    assert SECRET not in message


def test_the_config_repr_redacts_the_dsn() -> None:
    config = _state(backend="postgresql", dsn=f"postgresql://u:{SECRET}@db1/scale")
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.state)
    assert "postgresql://u:***@db1/scale" in repr(config.state)
    assert config.state.dsn == f"postgresql://u:{SECRET}@db1/scale"  # the value itself is intact


def _run(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    return subprocess.run(
        [str(SCRIPT), command, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _postgresql_config(tmp_path: Path, **state: Any) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        api={"host": "127.0.0.1", "port": free_port()},
        mesos={"master": f"http://127.0.0.1:{free_port()}"},
        state={"backend": "postgresql", **state},
        logging={"format": "json"},
    )


def test_the_daemon_takes_postgresql_and_names_an_unreachable_database(tmp_path: Path) -> None:
    """``check-config`` accepts the backend; ``run`` retries the database for a few seconds,
    then exits 3 with one line naming state.dsn and the target. Neither the password file's
    content nor a password in the DSN appears anywhere."""
    password_file = tmp_path / "pw"
    password_file.write_text(SECRET + "\n")
    password_file.chmod(0o600)
    config = _postgresql_config(
        tmp_path, dsn="postgresql://scheduler@127.0.0.1:1/scale", password_file=str(password_file)
    )
    checked = _run("check-config", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    done = _run("run", config)
    assert done.returncode == 3, done.stdout + done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    expected = "scale-scheduler: database error: state.dsn: database unreachable: 127.0.0.1:1/scale"
    assert last_line.startswith(expected), done.stderr
    for output in (checked, done):
        assert SECRET not in output.stdout + output.stderr
    assert not (tmp_path / "scale-scheduler.db").exists()


def test_an_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    config = _postgresql_config(
        tmp_path,
        dsn="postgresql://scheduler@127.0.0.1:1/scale",
        password_file=str(tmp_path / "missing"),
    )
    done = _run("check-config", config)
    assert done.returncode == 2
    assert "config error: state.password_file: cannot read" in done.stderr


def test_a_dsn_password_never_reaches_the_output(tmp_path: Path) -> None:
    config = _postgresql_config(tmp_path, dsn=f"postgresql://scheduler:{SECRET}@127.0.0.1:1/scale")
    for command, status in (("check-config", 0), ("run", 3)):
        done = _run(command, config)
        assert done.returncode == status, done.stderr
        assert SECRET not in done.stdout + done.stderr
