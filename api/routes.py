"""Every route of the REST API, wired in one place."""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.api import views_scheduler, views_status


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/scheduler/", views_scheduler.get_scheduler)
    router.add_patch("/scheduler/", views_scheduler.patch_scheduler)
    router.add_get("/status/", views_status.get_status)
