"""The API dependency that authenticates a node by its certificate (see roost.pki.nodeauth).

Node credentials are accepted only by the routes that use :data:`NodeDep` (``/nodes/self…``,
``/enroll/renew``); every other route wants an API token, so a node cannot reach other nodes.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from roost.api.deps import RuntimeDep
from roost.db.models import utcnow
from roost.pki.enroll import authority
from roost.pki.nodeauth import (
    NodeAuthFailed,
    NodePrincipal,
    ReplayGuard,
    check_certificate,
    from_signature,
    from_tls,
)

log = logging.getLogger(__name__)

_CHALLENGE = {"WWW-Authenticate": 'RoostNode realm="roost"'}


def _guard(request: Request, window: float) -> ReplayGuard:
    guard: ReplayGuard | None = getattr(request.app.state, "node_replay_guard", None)
    if guard is None:
        guard = request.app.state.node_replay_guard = ReplayGuard(window)
    return guard


def _target(request: Request) -> str:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string") or b""
    return (raw + b"?" + query if query else raw).decode("latin-1")


async def node_principal(request: Request, runtime: RuntimeDep) -> NodePrincipal:
    skew = float(runtime.settings.nodes.signature_skew_seconds)
    try:
        try:
            cert = from_tls(request.scope)
        except ValueError:
            raise NodeAuthFailed("the TLS client certificate does not parse") from None
        if cert is None:
            cert = from_signature(
                request.headers,
                request.method,
                _target(request),
                await request.body(),
                time.time(),
                skew,
                _guard(request, skew),
            )
        async with runtime.db.session() as s:
            return await check_certificate(s, authority(runtime.settings), cert, utcnow())
    except NodeAuthFailed as exc:
        log.warning("node credential refused for %s %s: %s", request.method, request.url.path, exc)
        raise HTTPException(401, f"node credential refused: {exc}", _CHALLENGE) from None


NodeDep = Annotated[NodePrincipal, Depends(node_principal)]
