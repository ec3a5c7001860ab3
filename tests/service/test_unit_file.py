"""``systemd/scale-scheduler.service``: what it promises, and ``systemd-analyze`` accepts it.

``verify`` needs the ``ExecStart`` binary to exist, so the checked copy differs from the shipped
file in that path only: it points at this virtualenv's real ``scale-scheduler``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from servicekit import ENTRY_POINT

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "scale-scheduler.service"
SHIPPED_BINARY = "/opt/scale-scheduler/bin/scale-scheduler"

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def directives() -> dict[str, list[str]]:
    """``Key`` -> every value it is given, across sections (repeated keys accumulate)."""
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def local_copy(tmp_path: Path, text: str | None = None) -> Path:
    text = UNIT.read_text(encoding="utf-8") if text is None else text
    copy = tmp_path / "scale-scheduler.service"
    copy.write_text(text.replace(SHIPPED_BINARY, str(ENTRY_POINT)))
    return copy


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert analyze is not None
    return subprocess.run(
        [analyze, *args], capture_output=True, text=True, timeout=60, cwd=Path(args[-1]).parent
    )


def test_the_unit_says_what_the_issue_asks() -> None:
    unit = directives()
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == [f"{SHIPPED_BINARY} run --config /etc/scale-scheduler/config.yaml"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2 4"]
    assert unit["WatchdogSec"][0].endswith("s")
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["scale-scheduler"]
    assert unit["WorkingDirectory"] == ["%S/scale-scheduler"], "the default state.path lands here"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert unit[key] == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"]
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "PYTHONFAULTHANDLER=1" in unit["Environment"], "a watchdog abort shows the stack"
    # Room for api.max_connections: at 1,024 an idle-connection flood exhausted the descriptors.
    assert unit["LimitNOFILE"] == ["65536"]


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = run_analyze("verify", str(local_copy(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_analyze
def test_verify_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    broken = UNIT.read_text(encoding="utf-8").replace(SHIPPED_BINARY, "/nonexistent/scale-x")
    result = run_analyze("verify", str(local_copy(tmp_path, broken)))
    assert result.returncode != 0
    assert "/nonexistent/scale-x" in result.stdout + result.stderr


@needs_analyze
def test_the_sandbox_keeps_the_exposure_low(tmp_path: Path) -> None:
    # Exposure is 0.0 (locked down) to 10.0 (none); --threshold takes tenths.
    result = run_analyze("security", "--offline=yes", "--threshold=20", str(local_copy(tmp_path)))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
