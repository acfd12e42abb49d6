"""The one mapping from errors to HTTP answers: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from thinnest.api.schemas import ErrorResponse
from thinnest.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitError,
    ThinnestError,
    UnavailableError,
    ValidationError,
    field_of,
)
from thinnest.log import logger

log = logger.getChild("api")

STATUS_OF: list[tuple[type[ThinnestError], int]] = [
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ValidationError, 422),
    (ConfigError, 422),
    (RateLimitError, 429),
    (UnavailableError, 503),
]

#: Documented error answers, for the OpenAPI schema of each route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in [
        (401, "missing, malformed, revoked or unknown API key"),
        (403, "the key may not do this (a publishable key, or an origin it does not allow)"),
        (404, "not found, or not the caller's"),
        (409, "conflicts with what exists (e.g. an agent name in use)"),
        (422, "invalid request; `error.field` names the field"),
        (
            429,
            "rate limit exceeded (`rate_limited`), or the key's open sessions are at its cap "
            "(`too_many_sessions`); see Retry-After",
        ),
        (
            503,
            "LiveKit or a voice engine worker is unreachable, or every worker is busy "
            "(`no_capacity`; see Retry-After)",
        ),
    ]
}


def status_for(exc: ThinnestError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def _field_of(loc: tuple[Any, ...], err_type: str) -> str:
    """A request's field: ``("body", "context")`` is ``context``, ``("query", "limit")``
    ``limit``; a body that is not JSON, or not an object, is ``body``."""
    parts = [p for p in loc if p != "body"]
    if err_type in ("json_invalid", "model_attributes_type"):
        return "body"
    if parts and parts[0] in ("query", "path", "header"):
        parts = parts[1:]
    return field_of(parts)


async def _thinnest_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ThinnestError)
    status = status_for(exc)
    headers = None
    if isinstance(exc, RateLimitError | UnavailableError) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))}
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"}
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(status, exc.code, exc.message, exc.field, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    field = _field_of(tuple(first.get("loc", ())), str(first.get("type", "")))
    if first.get("type") == "json_invalid":
        message = "request body is not valid JSON"
    else:
        message = f"{field}: {first.get('msg', 'invalid value')}"
    return error_response(422, "invalid_request", message, field)


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8): a bad body
        return error_response(422, "invalid_request", "request body is not valid JSON", "body")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), headers=headers
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ThinnestError, _thinnest_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
