"""The durable Mesos framework id: loaded at start-up, committed on the first SUBSCRIBED."""

from __future__ import annotations

import time

from scale_scheduler.state.changes import FrameworkIdSaved
from scale_scheduler.state.interface import StateStore


class FrameworkIdRepository:
    """Implements the driver's ``FrameworkIdStore`` on top of the store."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.framework_id: str | None = None

    async def load_framework_id(self) -> str | None:
        self.framework_id = await self._store.load_framework_id()
        return self.framework_id

    async def save_framework_id(self, framework_id: str) -> None:
        if framework_id == self.framework_id:
            return

        def apply() -> None:
            self.framework_id = framework_id

        await self._store.commit([FrameworkIdSaved(framework_id, time.time())], apply)
