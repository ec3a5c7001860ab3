"""Fixtures of the pymesos driver tests: drivers that are always stopped, a simulated cluster.

pymesos is imported lazily (inside the fixtures), so this file loads on every Python.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymesos_kit import API_URL, SIM, MakeDriver, MemoryIdStore, driver_config

from scale_scheduler.daemon.mesos.driver import FrameworkIdStore
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.simulator import SimulatedCluster


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedCluster]:
    async with SimulatedCluster(agents=1, **SIM) as cluster:
        yield cluster


@pytest.fixture
async def make_driver() -> AsyncIterator[MakeDriver]:
    """``make_driver(master, store=, framework_id=, config=, settings=, client_factory=)``."""
    from scale_scheduler.daemon.mesos.pymesos_driver import PymesosSettings, create_pymesos_driver

    made: list[Any] = []

    def make(
        master: str,
        *,
        store: FrameworkIdStore | None = None,
        framework_id: str | None = None,
        config: Config | None = None,
        settings: PymesosSettings | None = None,
        client_factory: Any = None,
        **mesos: Any,
    ) -> Any:
        driver = create_pymesos_driver(
            config or driver_config(master=master, **mesos),
            framework_id,
            store if store is not None else MemoryIdStore(),
            api_url=API_URL,
            settings=settings
            or PymesosSettings(
                request_timeout=2.0, backoff_initial=0.05, backoff_max=0.2, thread_exit_timeout=3.0
            ),
            **({"client_factory": client_factory} if client_factory is not None else {}),
        )
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.stop()
