"""Dependencies shared by the routers: the runtime and the authenticated principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from roost.auth import Principal, Role, verify_token
from roost.service import Runtime

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="roost"'}
# Declares the bearer scheme in the OpenAPI document of every route that takes a token;
# the header is read and checked below, with Roost's own messages.
_SCHEME = HTTPBearer(scheme_name="bearer", description="roost_<id>_<secret>", auto_error=False)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


async def authenticate(runtime: Runtime, token: str | None) -> Principal:
    if not token:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer roost_…)", _CHALLENGE)
    principal = await verify_token(runtime.db, token)
    if principal is None:
        raise HTTPException(401, "invalid, expired or revoked token", _CHALLENGE)
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        runtime: Annotated[Runtime, Depends(get_runtime)],
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_SCHEME)],
    ) -> Principal:
        principal = await authenticate(runtime, _bearer(request.headers.get("authorization")))
        principal.require(role)
        return principal

    return dependency


async def websocket_principal(ws: WebSocket, role: Role) -> Principal:
    """Browsers cannot set headers on a WebSocket, so ``access_token`` may come in the query."""
    runtime: Runtime = ws.app.state.runtime
    token = _bearer(ws.headers.get("authorization")) or ws.query_params.get("access_token")
    principal = await authenticate(runtime, token)
    principal.require(role)
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Operator = Annotated[Principal, Depends(require(Role.operator))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
