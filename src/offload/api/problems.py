"""Error bodies: every 4xx/5xx names the problem in a machine-readable way.

Shape (RFC 9457 problem details with an ``errors`` list)::

    {"type": "about:blank", "status": 422, "code": "invalid_request",
     "title": "The request is invalid",
     "errors": [{"field": "body.url", "code": "url_scheme", "message": "…"}]}
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from offload.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    ValidationError,
)


class ProblemError(BaseModel):
    """One thing wrong with the request."""

    field: str = Field(description='Where: "body.url", "body.tasks[3].retries", "query.limit".')
    code: str = Field(description="Machine-readable reason, e.g. missing, too_large.")
    message: str


class Problem(BaseModel):
    """An error body (RFC 9457 problem details with an ``errors`` list)."""

    type: str = "about:blank"
    status: int
    code: str
    title: str
    errors: list[ProblemError] | None = None


_DESCRIPTIONS = {400: "Malformed JSON", 401: "Missing or invalid API key",
                 403: "The key's scope does not allow this", 404: "Not found",
                 409: "Conflicts with the current state", 413: "Request body too large",
                 422: "Invalid request; errors[].field names each problem",
                 503: "Database unavailable; nothing was written (see Retry-After)"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem bodies for ``statuses``."""
    return {status: {"model": Problem, "description": _DESCRIPTIONS.get(status, "Error"),
                     "content": {"application/problem+json": {
                         "schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}


def problem(status: int, code: str, title: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem-details response."""
    body: dict[str, Any] = {"type": "about:blank", "status": status, "code": code,
                            "title": title}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers,
                        media_type="application/problem+json")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    malformed = False
    for err in exc.errors():
        kind = str(err.get("type", "invalid"))
        loc = err.get("loc", ())
        if kind == "json_invalid":
            malformed = True
            loc = ("body",)
        message = str(err.get("msg", "invalid"))
        if kind == "extra_forbidden":
            message = "unknown field"
        errors.append({"field": _field(loc), "code": kind, "message": message})
    if malformed:
        return problem(400, "malformed_json", "The request body is not valid JSON", errors)
    return problem(422, "invalid_request", "The request is invalid", errors)


async def _offload_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    errors = [{"field": exc.field, "code": exc.code, "message": exc.message}]
    if exc.code == "invalid_cursor":  # a token we did not issue: malformed, not merely invalid
        return problem(400, "invalid_cursor", "The cursor was not issued for this list",
                       errors)
    return problem(422, "invalid_request", "The request is invalid", errors)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
             403: "forbidden", 413: "payload_too_large", 415: "unsupported_media_type"}
    errors = None
    if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. nesting too deep)
        errors = [{"field": "body", "code": "unparseable", "message": str(exc.detail)}]
    return problem(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                   errors, headers=dict(exc.headers or {}))


async def _not_found(request: Request, exc: Exception) -> Response:
    field = getattr(exc, "field", None)  # a path parameter no stored thing can match
    errors = [{"field": field, "code": "invalid_character", "message": str(exc)}] \
        if isinstance(field, str) else None
    return problem(404, "not_found", str(exc), errors)


async def _conflict(request: Request, exc: Exception) -> Response:
    return problem(409, "conflict", str(exc))


async def _auth(request: Request, exc: Exception) -> Response:
    return problem(401, "unauthorized", str(exc) or "missing or invalid API key",
                   headers={"WWW-Authenticate": "Bearer"})


async def _forbidden(request: Request, exc: Exception) -> Response:
    return problem(403, "forbidden", str(exc))


async def _full(request: Request, exc: Exception) -> Response:
    return problem(503, "store_full",
                   "The database's disk is full; nothing was written. The engine recovers "
                   "by itself once disk space is freed. Retry later.",
                   headers={"Retry-After": "5"})


async def _unavailable(request: Request, exc: Exception) -> Response:
    return problem(503, "store_unavailable",
                   "The database is unavailable; nothing was written. Retry later.",
                   headers={"Retry-After": "2"})


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ValidationError, _offload_validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(ForbiddenError, _forbidden)
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(StoreFullError, _full)
    app.add_exception_handler(StoreUnavailableError, _unavailable)
    app.add_exception_handler(StoreError, _unavailable)
