"""Boot meets PKI: one-time enrollment tokens in rendered command lines, and enrollment
through the HTTP boot server for systems that cannot reach the API.

A commissioning image lives on the nodes' LAN, where the boot server listens, while the API
stays on loopback unless the operator opens it (MAAS's metadata service sits on the rack for
the same reason). So every rendered document gets ``token``: a fresh one-time enrollment token
limited to that node's MAC, and ``POST /boot/enroll/<token>`` spends it with the facts in the
body, exactly as ``POST /api/v1/enroll`` would: the node goes enrolling → ready.
"""

from __future__ import annotations

from typing import Any

from roost.boot.documents import TokenFor
from roost.boot.server import Enroller
from roost.errors import Forbidden
from roost.pki.enroll import enroll
from roost.pki.tokens import TokenRefused, issue_enrollment_token
from roost.service import Runtime


def token_issuer(runtime: Runtime) -> TokenFor:
    """``token_for(mac)``: a one-time enrollment token for that MAC only."""
    ttl = runtime.settings.nodes.enrollment_ttl_seconds

    async def token_for(mac: str) -> str:
        return await issue_enrollment_token(runtime.db, mac=mac, ttl=ttl)

    return token_for


def enroller(runtime: Runtime) -> Enroller:
    async def enroll_node(token: str, mac: str, facts: dict[str, Any], ip: str) -> None:
        try:
            await enroll(runtime, token, mac, facts, ip=ip)
        except TokenRefused as exc:
            raise Forbidden(str(exc)) from None

    return enroll_node
