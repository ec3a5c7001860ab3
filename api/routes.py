"""Every route of the REST API, wired in one place.

Ids are ``[0-9]+``: ``\\d`` would also match other scripts' digits (Arabic-Indic,
fullwidth ...), which ``int()`` reads as numbers: ``/tasks/%D9%A3%D9%A3/`` is not task 33."""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.api import (
    dashboard,
    health,
    metrics,
    openapi,
    views_leader,
    views_nodes,
    views_queue,
    views_scheduler,
    views_status,
    views_tasks,
    views_usage,
)


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/scheduler/", views_scheduler.get_scheduler)
    router.add_patch("/scheduler/", views_scheduler.patch_scheduler)
    router.add_get("/status/", views_status.get_status)
    router.add_get("/leader/", views_leader.get_leader)
    router.add_post("/queue/", views_queue.post_queue)
    router.add_get("/queue/", views_queue.get_queue)
    router.add_get("/tasks/", views_tasks.list_tasks)
    router.add_get(r"/tasks/{task_id:[0-9]+}/", views_tasks.get_task)
    router.add_delete(r"/tasks/{task_id:[0-9]+}/", views_tasks.delete_task)
    router.add_get("/nodes/", views_nodes.list_nodes)
    router.add_get(r"/nodes/{node_id:[0-9]+}/", views_nodes.get_node)
    router.add_patch(r"/nodes/{node_id:[0-9]+}/", views_nodes.patch_node)
    router.add_get("/usage/", views_usage.get_usage)
    router.add_get("/metrics", metrics.get_metrics)
    router.add_get("/healthz", health.get_healthz)
    router.add_get("/readyz", health.get_readyz)
    router.add_get("/", dashboard.get_page)
    router.add_get("/dashboard.css", dashboard.get_css)
    router.add_get("/dashboard.js", dashboard.get_js)
    router.add_get("/dashboard/state/", dashboard.get_state)
    router.add_get("/dashboard/events/", dashboard.get_events)
    router.add_get("/openapi.json", openapi.get_openapi)
