"""Assertions shared by API tests: the spec's text/plain error shape."""

from __future__ import annotations

from aiohttp import ClientResponse


async def assert_text_error(response: ClientResponse, status: int, *fragments: str) -> str:
    """The response is ``status`` with a ``text/plain`` body containing every fragment."""
    body = await response.text()
    assert response.status == status, body
    assert response.content_type == "text/plain", response.content_type
    for fragment in fragments:
        assert fragment in body, f"{fragment!r} not in {body!r}"
    return body
