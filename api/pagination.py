"""Page parameters and the paginated envelope ``{count, next, previous, results}``.

``?page=`` (from 1) and ``?page_size=`` (default ``api.page_size``, at most ``MAX_PAGE_SIZE``);
``next`` and ``previous`` are absolute URLs of the neighbouring pages, or null.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from scale_scheduler.api.errors import bad_request
from scale_scheduler.api.json_body import brief
from scale_scheduler.api.keys import CONFIG

MAX_PAGE_SIZE = 10_000
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def _positive_int(request: web.Request, name: str, default: int, limit: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if _INTEGER.fullmatch(raw) is None:  # int() also takes "1_000", " 7" and "٣"
        raise bad_request(f"Query parameter {name!r} must be an integer, not {brief(raw)!r}.")
    value = int(raw) if len(raw) <= 20 else None  # None: far out of range
    if value is None or not 1 <= value <= limit:
        raise bad_request(
            f"Query parameter {name!r} must be between 1 and {limit}, not {brief(raw)}."
        )
    return value


def page_of(request: web.Request) -> Page:
    size = _positive_int(request, "page_size", request.app[CONFIG].api.page_size, MAX_PAGE_SIZE)
    number = _positive_int(request, "page", 1, 10**9)
    return Page(number, size)


def envelope(request: web.Request, page: Page, count: int, results: list[Any]) -> dict[str, Any]:
    def link(number: int) -> str:
        return str(request.url.update_query(page=number, page_size=page.size))

    return {
        "count": count,
        "next": link(page.number + 1) if page.offset + page.size < count else None,
        "previous": link(page.number - 1) if page.number > 1 else None,
        "results": results,
    }
