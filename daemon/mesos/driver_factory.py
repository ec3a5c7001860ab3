"""Pick the Mesos driver named by ``mesos.driver``."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from scale_scheduler.daemon.mesos.driver import FrameworkIdStore, SchedulerDriver
from scale_scheduler.daemon.mesos.loop_share import LoopShare
from scale_scheduler.daemon.service.config import Config, ConfigError


def check_driver(config: Config) -> None:
    """Raise ``ConfigError`` when the driver ``mesos.driver`` names cannot be loaded."""
    if config.mesos.driver == "pymesos":
        _pymesos_driver_module()


def _pymesos_driver_module() -> ModuleType:
    try:
        from scale_scheduler.daemon.mesos import pymesos_driver
    except ImportError as exc:
        raise ConfigError(
            "mesos.driver: 'pymesos' needs the pymesos package, which installs on Python "
            f"3.10 only ({exc}); install with: pip install 'scale-scheduler[pymesos]' under "
            "python3.10, or set mesos.driver: native"
        ) from None
    return pymesos_driver


def create_driver(
    config: Config,
    framework_id: str | None,
    id_store: FrameworkIdStore,
    *,
    api_url: str = "",
    loop_share: LoopShare | None = None,
    may_subscribe: Callable[[], bool] | None = None,
) -> SchedulerDriver:
    """``loop_share`` paces the native driver's stream reader against the API (the pymesos
    driver reads on its own thread); ``may_subscribe`` is asked before every SUBSCRIBE (the
    leadership's ``may_act``: a deposed leader never resubscribes)."""
    if config.mesos.driver == "pymesos":
        driver: SchedulerDriver = _pymesos_driver_module().create_pymesos_driver(
            config, framework_id, id_store, api_url=api_url, may_subscribe=may_subscribe
        )
        return driver
    from scale_scheduler.daemon.mesos.native_driver import create_native_driver

    return create_native_driver(
        config,
        framework_id,
        id_store,
        api_url=api_url,
        loop_share=loop_share,
        may_subscribe=may_subscribe,
    )
