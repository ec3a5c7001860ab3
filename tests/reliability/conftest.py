"""Fixtures of the reliability scenarios. Two shared helpers of ``tests/`` are reused: the
subprocess runner (``daemon_process.py``) and the scheduling core's harness with a fake driver
(``corekit.py``, for the regression tests of defects the scenarios found)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from corekit import Clock, CoreHarness
from pgserver import PgDatabase

from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.postgres.backend import PostgresState
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> PgDatabase | None:
    """The state backend a scenario's daemon runs on: None for SQLite (a file in the test's
    directory), or a PostgreSQL database of its own (the session's server is started only for
    this parameter)."""
    return request.getfixturevalue("pg_database") if request.param == "postgresql" else None


@pytest.fixture
async def core_harness(
    make_config: Callable[..., Config], backend: PgDatabase | None
) -> AsyncIterator[CoreHarness]:
    """The scheduling core on a real store of each backend, a fake driver and a settable clock
    (not started)."""
    config = make_config(
        scheduler={
            "revive_interval": 0.0,
            "launch_timeout": 30.0,
            "reconcile_retry": 0.05,
            "reconcile_interval": 3600.0,
        }
    )
    state: StateStore
    if backend is None:
        state = SqliteState(await Store.open(Path(config.state.path)))
    else:
        state = await PostgresState.open(backend.dsn, Password(backend.password))
    harness = CoreHarness(config, state, Clock())
    try:
        yield harness
    finally:
        if harness.core is not None:
            await harness.core.stop()
        await state.close()
