"""The daemon freezes what start-up loaded out of the garbage collector's reach (bench B1/B3)."""

from __future__ import annotations

import asyncio
import gc

from scale_scheduler.api.app import SUPERVISOR, build_app
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.service import serve


async def test_start_up_state_is_frozen_before_serving(make_config: object) -> None:
    gc.unfreeze()
    config = make_config()  # type: ignore[operator]
    app = build_app(config, connect_mesos=False)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(config, app=app, on_ready=ready.set_result))
    try:
        await asyncio.wait_for(ready, 10)
        frozen = gc.get_freeze_count()
    finally:
        app[SUPERVISOR].stop("test over")
        code = await asyncio.wait_for(server, 10)
        gc.unfreeze()
    assert code == ExitCode.OK
    # Modules, the app and the loaded state: tens of thousands of objects, not a stray few.
    assert frozen > 10_000
