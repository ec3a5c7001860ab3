"""Where pymesos cannot be imported (Python 3.11+), ``mesos.driver: pymesos`` is a
configuration error: ``scale-scheduler run`` exits 2 saying why and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pymesos_kit import console_script, pymesos_importable, write_config

pytestmark = pytest.mark.skipif(
    pymesos_importable(), reason="pymesos is importable on this Python: the driver is available"
)


def test_run_exits_2_when_pymesos_cannot_be_imported(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9", tmp_path / "state.db")
    done = subprocess.run(
        [console_script(), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "mesos.driver: 'pymesos' needs the pymesos package" in output
    assert "Python 3.10 only" in output
    assert "pip install 'scale-scheduler[pymesos]'" in output
    assert "set mesos.driver: native" in output
