"""Refuse U+0000 (NUL) in a request's path or query string before any route sees it.

``%00`` decodes to a character no PostgreSQL text parameter takes: ``GET /agents/a%00b`` or
``?agent_id=a%00b`` made the database driver raise, a 500. No id, name or filter can hold it,
so the request is refused with a 422 naming the parameter (its name from the path template
it matches in the OpenAPI schema). Bodies are checked by the request models
(``api.schemas.storable``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from thinnest.api.errors import error_response

__all__ = ["NulGuard"]


class NulGuard:
    """ASGI middleware: a 422 for NUL in the path or the query string (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = _nul_in_query(scope) or _nul_in_path(scope)
        if field is None:
            await self.app(scope, receive, send)
            return
        response = error_response(
            422, "invalid_request", f"{field}: must not contain U+0000 (NUL)", field
        )
        await response(scope, receive, send)


def _nul_in_query(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" not in query and "\x00" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\ufffd") or "query"
    return None


def _nul_in_path(scope: Scope) -> str | None:
    path = scope.get("path", "")
    if "\x00" not in path:
        return None
    parts = path.split("/")
    app = scope.get("app")
    # The route's parameter name, from the path templates of the app's OpenAPI schema.
    templates = app.openapi().get("paths", {}) if isinstance(app, FastAPI) else {}
    for template in templates:
        pieces = template.split("/")
        if len(pieces) != len(parts):
            continue
        name = None
        for piece, part in zip(pieces, parts, strict=True):
            if piece.startswith("{") and piece.endswith("}"):
                if name is None and "\x00" in part:
                    name = piece[1:-1]
            elif piece != part:
                break
        else:
            if name is not None:
                return name
    return "path"
