"""Fixtures of the driver tests: fake masters and drivers that are always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from driver_fakes import API_URL, FAST, FakeMaster, MakeDriver, MemoryIdStore, driver_config

from scale_scheduler.daemon.mesos.driver import FrameworkIdStore
from scale_scheduler.daemon.mesos.loop_share import LoopShare
from scale_scheduler.daemon.mesos.master_detector import MasterDetector, StaticMasterDetector
from scale_scheduler.daemon.mesos.native_driver import (
    DriverSettings,
    NativeDriver,
    create_native_driver,
)
from scale_scheduler.daemon.mesos.timer_clock import TimerClock
from scale_scheduler.daemon.service.config import Config


@pytest.fixture
async def master() -> AsyncIterator[FakeMaster]:
    fake = FakeMaster(name="m1")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def second_master() -> AsyncIterator[FakeMaster]:
    fake = FakeMaster(name="m2")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_driver() -> AsyncIterator[MakeDriver]:
    """``make_driver(*urls, store=, framework_id=, config=, settings=, detector=, clock=,
    loop_share=, may_subscribe=)``."""
    made: list[NativeDriver] = []

    def make(
        *urls: str,
        store: FrameworkIdStore | None = None,
        framework_id: str | None = None,
        config: Config | None = None,
        settings: DriverSettings = FAST,
        detector: MasterDetector | None = None,
        clock: TimerClock | None = None,
        loop_share: LoopShare | None = None,
        may_subscribe: Callable[[], bool] | None = None,
    ) -> NativeDriver:
        driver = create_native_driver(
            config or driver_config(),
            framework_id,
            store if store is not None else MemoryIdStore(),
            api_url=API_URL,
            detector=detector or StaticMasterDetector(list(urls)),
            settings=settings,
            clock=clock,
            loop_share=loop_share,
            may_subscribe=may_subscribe,
        )
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.stop()
