"""Health, readiness and Prometheus metrics. Only /healthz and /readyz answer without a token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from roost.api.deps import RuntimeDep, Viewer

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: the database answers and every service reports healthy."""
    checks: dict[str, dict[str, object]] = {}
    try:
        async with runtime.db.session() as s:
            await s.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "detail": str(exc)}
    for name, h in runtime.health().items():
        checks[name] = {"ok": h.ok, "detail": h.detail}
    ready = runtime.started and all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=Response)
async def metrics(_: Viewer) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
