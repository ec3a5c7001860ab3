"""Typed application keys: every service the views reach, in one place."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from scale_scheduler.daemon.config import Config
from scale_scheduler.daemon.driver import ConnectionStatus
from scale_scheduler.daemon.loop_share import LoopShare
from scale_scheduler.daemon.pruner import Pruner
from scale_scheduler.daemon.scheduler_core import SchedulerCore
from scale_scheduler.state.interface import MaintainedState
from scale_scheduler.state.nodes import ClusterResources
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.store import Store


class ClusterView(Protocol):
    """What ``/status/`` reads about the queue and the cluster (the scheduling core)."""

    @property
    def queue_depth(self) -> int: ...

    def resource_summary(self) -> ClusterResources | None:
        """The cluster's resources, or None while unknown."""
        ...


CONFIG = web.AppKey("config", Config)
SCHEDULER_HOSTNAME = web.AppKey("scheduler_hostname", str)
"""This host's name (``mesos.hostname`` or the machine's), resolved once at start-up."""
STORE = web.AppKey("store", Store)
STATE = web.AppKey("state", MaintainedState)
"""The state interface over ``STORE`` (what the core and the pruner use)."""
SCHEDULER = web.AppKey("scheduler", SchedulerRepository)
CONNECTION = web.AppKey("connection", ConnectionStatus)
CLUSTER = web.AppKey("cluster", ClusterView)
CORE = web.AppKey("core", SchedulerCore)
LOOP_SHARE = web.AppKey("loop_share", LoopShare)
PRUNER = web.AppKey("pruner", Pruner)
"""Retention of finished tasks: the pruning loop, the retention mark, the file sizes."""
