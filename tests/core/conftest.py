"""Fixtures of the scheduling core's tests (builders and fakes live in ``corekit``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from corekit import Clock, CoreHarness

from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.memory import MemoryState
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core_config(make_config: Callable[..., Config]) -> Config:
    return make_config(
        scheduler={
            "refuse_seconds": 5.0,
            "idle_refuse_seconds": 120.0,
            "revive_interval": 0.2,
            "launch_timeout": 30.0,
            "reconcile_retry": 0.05,
            "reconcile_interval": 3600.0,
        }
    )


@pytest.fixture
async def store(core_config: Config) -> AsyncIterator[Store]:
    store = await Store.open(Path(core_config.state.path))
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "memory"])
async def harness(
    request: pytest.FixtureRequest, core_config: Config, store: Store, clock: Clock
) -> AsyncIterator[CoreHarness]:
    """The core on either implementation of the state interface: each test runs on both."""
    state = SqliteState(store) if request.param == "sqlite" else MemoryState()
    h = CoreHarness(core_config, state, clock)
    yield h
    if h.core is not None:
        await h.core.stop()


@pytest.fixture
async def sqlite_harness(
    core_config: Config, store: Store, clock: Clock
) -> AsyncIterator[CoreHarness]:
    """The core on SQLite, for tests that read the database file itself (``store``)."""
    h = CoreHarness(core_config, SqliteState(store), clock)
    yield h
    if h.core is not None:
        await h.core.stop()
