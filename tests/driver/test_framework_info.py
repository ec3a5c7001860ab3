"""FrameworkInfo and credentials built from config."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from scale_scheduler.daemon.mesos.framework_info import (
    Credentials,
    CredentialsError,
    api_url_from_config,
    build_framework_info,
    read_credentials,
)
from scale_scheduler.daemon.service.config import ApiConfig, Config, MesosConfig


def info_dict(config: Config, **kwargs: str) -> dict[str, object]:
    args = {"user": "svc", "hostname": "sched.example", "api_url": "http://sched.example:8000/"}
    args.update(kwargs)
    info = build_framework_info(config, **args)  # type: ignore[arg-type]
    return msgspec.json.decode(msgspec.json.encode(info))


def test_defaults_carry_every_required_field() -> None:
    info = info_dict(Config())
    assert info == {
        "user": "svc",
        "name": "scale-scheduler",
        "failover_timeout": 604800.0,
        "checkpoint": True,
        "roles": ["*"],
        "capabilities": [
            {"type": "MULTI_ROLE"},
            {"type": "PARTITION_AWARE"},
            {"type": "TASK_KILLING_STATE"},
        ],
        "hostname": "sched.example",
        "webui_url": "http://sched.example:8000/",
    }


def test_configured_fields_and_framework_id() -> None:
    config = Config(
        mesos=MesosConfig(
            framework_name="fw",
            roles=["a", "b"],
            failover_timeout=60.0,
            principal="me",
            gpu_resources=True,
            webui_url="https://ui.example/",
        )
    )
    info = info_dict(config, framework_id="fid-1")
    assert info["name"] == "fw"
    assert info["roles"] == ["a", "b"]
    assert info["failover_timeout"] == 60.0
    assert info["principal"] == "me"
    assert info["id"] == {"value": "fid-1"}
    assert {"type": "GPU_RESOURCES"} in info["capabilities"]  # type: ignore[operator]
    assert info["webui_url"] == "https://ui.example/"


def test_with_id_and_to_dict() -> None:
    info = build_framework_info(Config(), user="u", hostname="h", api_url="http://h:1/")
    assert "id" not in info.to_dict()
    assert info.with_id("x").to_dict()["id"] == {"value": "x"}
    assert "id" not in info.with_id("x").with_id(None).to_dict()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.0.0.5", "http://10.0.0.5:9000/"),
        ("0.0.0.0", "http://sched.example:9000/"),
        ("::", "http://sched.example:9000/"),
        ("fe80::1", "http://[fe80::1]:9000/"),
    ],
)
def test_api_url_from_config(host: str, expected: str) -> None:
    config = Config(api=ApiConfig(host=host, port=9000))
    assert api_url_from_config(config, "sched.example") == expected


def test_credentials_from_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    creds = read_credentials(MesosConfig(principal="me", secret_file=str(secret)))
    assert creds == Credentials("me", "s3cret")
    assert creds.authorization() == "Basic bWU6czNjcmV0"  # base64("me:s3cret")
    assert "s3cret" not in repr(creds)


def test_no_credentials_without_a_secret_file() -> None:
    assert read_credentials(MesosConfig(principal="me")) is None
    assert read_credentials(MesosConfig()) is None


def test_unreadable_or_empty_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(CredentialsError, match=r"mesos\.secret_file: cannot read"):
        read_credentials(MesosConfig(principal="me", secret_file=str(missing)))
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(CredentialsError, match="is empty"):
        read_credentials(MesosConfig(principal="me", secret_file=str(empty)))
