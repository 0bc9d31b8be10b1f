"""The FastAPI app factory. Routers are listed here, one module per noun."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute

from roost import __version__
from roost.api import (
    boot,
    dhcp,
    discovery,
    enroll,
    events,
    health,
    nodes,
    openapi,
    problems,
    tokens,
)
from roost.metrics import HTTP_LATENCY, HTTP_REQUESTS
from roost.service import Runtime

PREFIX = "/api/v1"

ROUTERS = [
    events.router,
    tokens.router,
    nodes.router,
    nodes.meta,
    enroll.router,
    enroll.pki,
    discovery.router,
    boot.router,
    dhcp.router,
]


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Roost",
        version=__version__,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        # 413 before a body is parsed: a declared Content-Length over it is refused before a
        # byte is read, a chunked body as soon as its count passes it (boot.put_file raises it)
        max_body_size=runtime.settings.api.max_body_size,
    )
    app.state.runtime = runtime
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    problems.install(app)
    app.include_router(health.router)
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)

    @app.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        # FastAPI mounts routers, so the template is relative to /api/v1 (health: absolute).
        route = request.scope.get("route")
        path = route.path if isinstance(route, APIRoute) else "unmatched"
        HTTP_REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, path).observe(time.perf_counter() - start)
        return response

    return app
