"""Fixtures of the reliability scenarios. Two shared helpers of ``tests/`` are reused: the
subprocess runner (``daemon_process.py``) and the scheduling core's harness with a fake driver
(``corekit.py``, for the regression tests of defects the scenarios found)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from corekit import Clock, CoreHarness

from scale_scheduler.daemon.config import Config
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store


@pytest.fixture
async def core_harness(make_config: Callable[..., Config]) -> AsyncIterator[CoreHarness]:
    """The scheduling core on a real store, a fake driver and a settable clock (not started)."""
    config = make_config(
        scheduler={
            "revive_interval": 0.0,
            "launch_timeout": 30.0,
            "reconcile_retry": 0.05,
            "reconcile_interval": 3600.0,
        }
    )
    store = await Store.open(Path(config.state.path))
    harness = CoreHarness(config, SqliteState(store), Clock())
    try:
        yield harness
    finally:
        if harness.core is not None:
            await harness.core.stop()
        await store.close()
