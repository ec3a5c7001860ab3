"""Helpers of the security tests: a token file, and the daemon in-process against the simulated
cluster on a real loopback port (what the fuzzer and the contract tests talk to), from the shared
``daemonkit``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import daemonkit
from daemonkit import Daemon

TOKEN = "s3cr3t-api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SIM: dict[str, Any] = {"seed": 9}  # over the kit's simulator settings


def token_file(tmp_path: Path, text: str = TOKEN + "\n") -> Path:
    path = tmp_path / "api-token"
    path.write_text(text, encoding="utf-8")
    return path


@asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    *,
    agents: int = 4,
    sim: dict[str, Any] | None = None,
    subscribed: bool = True,
    **sections: Any,
) -> AsyncIterator[Daemon]:
    """``daemonkit.running_daemon`` with this suite's simulator seed: the daemon's own wiring
    (store, native driver, core) served on 127.0.0.1 on a free port; ``url`` has no trailing
    slash."""
    async with daemonkit.running_daemon(
        tmp_path, agents=agents, sim={**SIM, **(sim or {})}, subscribed=subscribed, **sections
    ) as daemon:
        yield daemon
