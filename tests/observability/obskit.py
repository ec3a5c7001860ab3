"""Helpers of the observability tests: this suite's simulator settings and daemon config over
the shared ``daemonkit`` (which also provides ``Daemon``, ``task`` and parsed scrapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import daemonkit
from daemonkit import Client as Client  # re-exported for the observability tests
from daemonkit import Daemon as Daemon
from daemonkit import Samples as Samples
from daemonkit import scrape as scrape
from daemonkit import task as task

from scale_scheduler.daemon.service.config import Config

SIM: dict[str, Any] = {**daemonkit.SIM, "task_duration": 0.1, "seed": 11}


def daemon_config(tmp_path: Path, master: str, **api: Any) -> Config:
    """The kit's daemon config with ``api`` settings, and agents refreshed every 0.3 s."""
    return daemonkit.daemon_config(
        tmp_path, master, api=api, scheduler={"agents_refresh_interval": 0.3}
    )
