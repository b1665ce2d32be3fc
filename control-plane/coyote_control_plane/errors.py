"""Errors as the API answers them: JSON with a stable code, a human message and, for bad
requests, the field at fault.

    {"error": {"code": "bot.not_found", "message": "no bot named 'sma'", "field": null}}

Routes raise :class:`ApiError`; the handlers installed by :func:`install` turn it, FastAPI's
validation errors and unexpected exceptions into that shape, so a client handles one format.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from coyote_reports import ReportsError

logger = logging.getLogger("coyote.control_plane")


class FieldError(BaseModel):
    field: str
    """Dotted path of the field in the request, e.g. ``body.params.fast``."""
    message: str


class ErrorBody(BaseModel):
    code: str
    """Stable and machine-readable, e.g. ``bot.not_found``, ``request.invalid``."""
    message: str
    field: str | None = None
    details: list[FieldError] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An error answered to the client as is."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def not_found(kind: str, name: object) -> ApiError:
    # Another organisation's resources are "not found" too: their existence is not revealed.
    return ApiError(404, f"{kind}.not_found", f"no {kind} named {name!r}")


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def invalid(code: str, message: str, *, field: str | None = None) -> ApiError:
    return ApiError(422, code, message, field=field)


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Not authenticated: no, an unknown, expired or revoked credential",
    403: "Authenticated, but the role does not allow this",
    404: "No such resource in the caller's organisation",
    409: "Conflicts with the current state",
    413: "Upload larger than the configured limit",
    422: "The request is invalid; ``field`` names what is wrong",
    503: "A service this needs is unavailable",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries of the error shape, for a route's decorator."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


def _body(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    error = ErrorBody(code=code, message=message, **extra)
    return JSONResponse(
        {"error": error.model_dump(exclude_none=True)},
        status_code=status,
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


def install(app: FastAPI) -> None:
    """Installs the handlers that give every error the same JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.status, exc.code, exc.message, field=exc.field)

    @app.exception_handler(ReportsError)
    async def _report_error(_request: Request, exc: ReportsError) -> JSONResponse:
        return _body(exc.status, exc.code, exc.message, field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            FieldError(field=".".join(str(part) for part in error["loc"]), message=error["msg"])
            for error in exc.errors()
        ]
        first = details[0] if details else FieldError(field="", message="invalid request")
        return _body(
            422,
            "request.invalid",
            f"{first.field}: {first.message}" if first.field else first.message,
            field=first.field or None,
            details=details,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "route.not_found", 405: "method.not_allowed"}.get(
            exc.status_code, f"http.{exc.status_code}"
        )
        return _body(exc.status_code, code, str(exc.detail))

    @app.exception_handler(sa.exc.DataError)
    async def _unstorable(_request: Request, exc: sa.exc.DataError) -> JSONResponse:
        # A value the schema let through but the database cannot hold (a NUL character in
        # text on PostgreSQL, a number beyond its columns): the request's fault, not ours.
        logger.info("refused a value the database cannot store: %s", exc.orig)
        return _body(
            422,
            "request.unstorable",
            "a value cannot be stored (NUL characters or numbers out of range)",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _body(500, "internal", "internal error; it has been logged")
