"""Fixtures for the simulator's tests: a fast in-process cluster and a subscribed client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sim_client import FAST, SchedulerClient

from scale_scheduler.simulator import SimulatedCluster


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedCluster]:
    async with SimulatedCluster(**FAST) as cluster:
        yield cluster


@pytest.fixture
async def client(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> AsyncIterator[SchedulerClient]:
    c = SchedulerClient(session, sim.url)
    assert await c.subscribe() == 200
    yield c
    await c.close()
