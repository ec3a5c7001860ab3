"""The durable Mesos framework id: loaded at start-up, committed on the first SUBSCRIBED."""

from __future__ import annotations

import time

from scale_scheduler.state.store import Statement, Store


class FrameworkIdRepository:
    """Implements the driver's ``FrameworkIdStore`` on top of the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.framework_id: str | None = None

    async def load(self) -> str | None:
        row = await self._store.fetchone("SELECT framework_id FROM framework WHERE id = 1")
        self.framework_id = str(row[0]) if row else None
        return self.framework_id

    async def save_framework_id(self, framework_id: str) -> None:
        if framework_id == self.framework_id:
            return

        def apply() -> None:
            self.framework_id = framework_id

        await self._store.write(
            [
                Statement(
                    "INSERT INTO framework (id, framework_id, registered) VALUES (1, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET framework_id = excluded.framework_id, "
                    "registered = excluded.registered",
                    [(framework_id, time.time())],
                )
            ],
            apply,
        )
