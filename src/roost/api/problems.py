"""Errors as RFC 9457 ``application/problem+json`` documents with precise messages."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from roost.errors import RoostError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    422: "Invalid input",
    429: "Too many requests",
    503: "Unavailable",
}


def problem(
    status: int,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, rest = parts[0], parts[1:]
        return f"{where} {'.'.join(rest)}" if rest else where
    return ".".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(RoostError)
    async def _roost(_req: Request, exc: RoostError) -> JSONResponse:
        return problem(exc.status, str(exc), exc.title)

    @app.exception_handler(HTTPException)
    async def _http(req: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 413 and MAX_BODY_SIZE_SCOPE_KEY in req.scope:
            limit = req.scope[MAX_BODY_SIZE_SCOPE_KEY]
            detail = f"request body larger than api.max_body_size ({limit} bytes)"
        return problem(exc.status_code, detail, headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": _location(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return problem(422, detail, errors=errors)

    @app.exception_handler(OverflowError)
    async def _overflow(_req: Request, exc: OverflowError) -> JSONResponse:
        # an integer the database cannot hold (SQLite and PostgreSQL: 64 bits), e.g. an id
        return problem(422, f"a number in the request is out of range: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal error; see the server log", "Internal error")
