"""Fixtures of the service tests: one simulated Mesos master process per test module, and a
``NOTIFY_SOCKET`` listener per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit import NotifyListener, SimProcess


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    try:
        yield listener
    finally:
        listener.close()
