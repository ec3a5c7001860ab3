"""Fixtures shared by every test folder: configs on a temporary database, the in-process API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pgserver import pg_database, postgresql  # noqa: F401  (one real PostgreSQL per session)
from ports import free_port
from zookeeper import zookeeper  # noqa: F401  (one real ZooKeeper server per test session)

from scale_scheduler.daemon.service.config import Config, parse_config

ConfigFactory = Callable[..., Config]


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """A test that configures logging as the daemon does (level, renderer) must not leak that
    configuration into the tests after it (e.g. hide their debug events from capture_logs)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Build a validated ``Config``: defaults, a temporary database, plus per-section overrides."""

    def make(**sections: dict[str, Any]) -> Config:
        raw: dict[str, dict[str, Any]] = {
            "state": {"path": str(tmp_path / "state.db")},
            "logging": {"format": "console"},
            "api": {"port": 0},
        }
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        return parse_config(raw, environ={})

    return make


@pytest.fixture
def unused_port() -> int:
    return free_port()
