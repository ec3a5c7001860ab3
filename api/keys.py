"""Typed application keys: every service the views reach, in one place.

The views reach the scheduling core and its state through ``CORE`` alone (``CoreFacade``). The
keys of what only the application's wiring touches (the store, the driver, the core itself)
live in ``api.app``.
"""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.daemon.mesos.loop_share import LoopShare
from scale_scheduler.daemon.scheduling.core_facade import CoreFacade
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.daemon.service.pruner import Pruner

CONFIG = web.AppKey("config", Config)
SCHEDULER_HOSTNAME = web.AppKey("scheduler_hostname", str)
"""This host's name (``mesos.hostname`` or the machine's), resolved once at start-up."""
CORE = web.AppKey("core", CoreFacade)
"""The scheduling core and its state, as the API sees them."""
LOOP_SHARE = web.AppKey("loop_share", LoopShare)
PRUNER = web.AppKey("pruner", Pruner)
"""Retention of finished tasks: the pruning loop, the retention mark, the file sizes."""
